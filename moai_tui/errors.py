"""Errors the user sees as one line on stderr, with the exit code the CLI returns."""


class MoaiError(Exception):
    """A failure with a message meant for the user (what went wrong and what to do)."""

    exit_code = 1


class UsageError(MoaiError):
    """Bad input: an unknown flavor, an index out of range, a malformed file."""

    exit_code = 2


class RefusedError(MoaiError):
    """A valid request the current state does not allow (accelerator in use, too many devices)."""

    exit_code = 1


class BackendError(MoaiError):
    """A backend could not produce a sample (no driver, server unreachable, bad answer)."""

    exit_code = 1


class ToolMessage(RefusedError):
    """A refusal whose text is the MoAI tool's own message: printed as it is, no prefix."""


def describe(error: BaseException) -> str:
    """One line for the user: our own errors' message as it is (it says what to do), the type
    too for anything else (a bug or a library's error, where the type is half the story)."""
    if isinstance(error, MoaiError):
        return str(error)
    return f"{type(error).__name__}: {error}"
