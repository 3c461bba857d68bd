"""Where the dashboard may run, and that it always ends.

`require_terminal()` refuses a dashboard with nothing to draw on: run on a pipe or a file it
would write escape codes forever. `moai-tui serve` starts its dashboards with Textual's web driver
(TEXTUAL_DRIVER), which talks to the server over pipes by design: those run.

`Lifeline` ends a running dashboard when a signal asks (SIGTERM, SIGHUP, SIGINT) or when its
input or output goes away (a terminal closed without SIGHUP, a dropped SSH session, the server
of a served dashboard gone). It asks Textual to shut down first, which restores the terminal; if
the app is still alive GRACE_S later (its event loop stuck writing to an output nobody reads),
it restores the terminal's modes itself and leaves with os._exit. Textual alone spins at 100 % of
a core on a closed terminal (its input thread sees EOF as "readable" forever), and a signal
handler registered with the event loop never runs while the loop is stuck in a write.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
import termios
import threading
import time
from typing import TYPE_CHECKING

from moai_tui.errors import UsageError

if TYPE_CHECKING:
    from textual.app import App

GRACE_S = 3.0  # Textual's own shutdown gets this long before os._exit
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
HANGUP = select.POLLHUP | select.POLLERR
# What Textual's terminal driver turns on, turned off: kitty keys, alternate screen, hidden
# cursor, focus events, mouse reporting, bracketed paste, no line wrap.
RESTORE = (
    "\x1b[<u\x1b[?1049l\x1b[?25h\x1b[?1004l"
    "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?7h"
)


def web_driven() -> bool:
    """Textual is told which driver to use (moai-tui serve sets its web driver): not a terminal."""
    return bool(os.environ.get("TEXTUAL_DRIVER"))


def require_terminal() -> None:
    """The dashboard reads keys from stdin and draws on stderr; stdout being a terminal tells
    that a person, not a pipe or a file, asked for it."""
    if web_driven():
        return
    streams = (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr))
    missing = [name for name, stream in streams if stream is None or not stream.isatty()]
    if missing:
        names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
        raise UsageError(
            f"the dashboard needs a terminal, and {names} "
            f"{'is' if len(missing) == 1 else 'are'} not one: "
            "use 'moai-tui smi' for a plain-text status, or 'moai-tui serve' for a browser"
        )


class Lifeline:
    """Created before the app runs (it remembers the terminal's modes), armed from on_mount
    (after Textual's driver has set up its own signal handlers, which it replaces)."""

    def __init__(self, grace_s: float = GRACE_S):
        self.grace_s = grace_s
        self._modes = None
        if not web_driven() and sys.stdin is not None and sys.stdin.isatty():
            try:
                self._modes = termios.tcgetattr(sys.stdin.fileno())
            except termios.error:
                pass
        self._wake_read, self._wake_write = os.pipe()
        self._armed = False

    def arm(self, app: App) -> None:
        if self._armed:
            return
        self._armed = True
        loop = asyncio.get_running_loop()
        for number in SIGNALS:
            # A plain handler runs even while the event loop is blocked in a write.
            signal.signal(number, self._on_signal)
        threading.Thread(
            target=self._watch, args=(app, loop), name="moai-lifeline", daemon=True
        ).start()

    def _on_signal(self, number: int, _frame) -> None:
        # Nothing here can block: the watcher thread does the rest.
        os.write(self._wake_write, bytes([number]))

    def _watch(self, app: App, loop: asyncio.AbstractEventLoop) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        for fd in (0, 1, 2):
            poller.register(fd, 0)  # no events asked: only hang-ups and errors are reported
        while True:
            for fd, events in poller.poll():
                if fd == self._wake_read:
                    self._end(app, loop, 128 + os.read(fd, 1)[0])
                    return
                if events & HANGUP:
                    self._end(app, loop, 128 + signal.SIGHUP)
                    return
                poller.unregister(fd)  # POLLNVAL: a closed descriptor, nothing to watch

    def _end(self, app: App, loop: asyncio.AbstractEventLoop, code: int) -> None:
        try:
            loop.call_soon_threadsafe(lambda: app.exit(return_code=code))
        except RuntimeError:
            pass  # the loop is closed: the app is on its way out already
        time.sleep(self.grace_s)
        # Still running: the event loop is stuck. Restore what can be, without blocking on it.
        restorer = threading.Thread(target=self._restore_terminal, daemon=True)
        restorer.start()
        restorer.join(0.5)
        os._exit(code)

    def _restore_terminal(self) -> None:
        if self._modes is None:
            return
        try:
            termios.tcsetattr(0, termios.TCSANOW, self._modes)
            os.write(2, RESTORE.encode())
        except (OSError, termios.error):
            pass  # the terminal is gone: nothing left to restore
