"""`moai-tui switch`: moreh-switch-model's numbered list and its messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from moai_tui.catalog import Catalog
from moai_tui.errors import UsageError
from moai_tui.parsing import is_number
from moai_tui.text.messages import SWITCHED


def render_menu(catalog: Catalog, current: str) -> str:
    lines = [f"Current MoAI Accelerator: {current}", ""]
    for number, flavor in enumerate(catalog.flavors, start=1):
        mark = "  *" if flavor.name == current else ""
        lines.append(f"{number}. {flavor.name}{mark}")
    return "\n".join(lines) + "\n"


def prompt(catalog: Catalog) -> str:
    return f"Selection (1-{len(catalog)}, q, Q): "


def numbered_protocol(
    catalog: Catalog,
    current: Callable[[], str],
    switch: Callable[[str], None],
    lines: TextIO,
    out: TextIO,
    echo: bool,
) -> None:
    """Print the list, read selections until q/Q or end of input, switching on each number.

    `switch` raises (refusal) to stop; a selection that is not in the list raises UsageError.
    """
    out.write(render_menu(catalog, current()) + "\n" + prompt(catalog))
    out.flush()
    for raw in lines:
        choice = raw.strip()
        if not echo:  # piped input is not echoed by a terminal: end the prompt line ourselves
            out.write("\n")
        if choice in ("q", "Q"):
            return
        if not choice:
            out.write(prompt(catalog))
            out.flush()
            continue
        if not is_number(choice) or not 1 <= int(choice) <= len(catalog):
            raise UsageError(
                f"invalid selection {choice!r}: type a number from 1 to {len(catalog)}, or q to quit"
            )
        name = catalog.flavors[int(choice) - 1].name
        switch(name)
        out.write("\n" + SWITCHED.format(name=name) + "\n\n")
        out.write(render_menu(catalog, current()) + "\n" + prompt(catalog))
        out.flush()
    out.write("\n")
