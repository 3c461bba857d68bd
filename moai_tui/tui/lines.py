"""Lines for the Line-API widgets: runs of text with named styles, turned into strips.

Every segment carries a real Style built on the widget's own (its background included): a
segment without one is drawn in the terminal's default colours (a patchwork on light terminals)
and breaks Textual's NO_COLOR filter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

# A line is a tuple of (text, style name or "") runs: cheap to build, compare and cache.
Run = tuple[str, str]
Line = tuple[Run, ...]


def merge(runs: Iterable[Run]) -> Line:
    """Adjacent runs of one style as one: a 512-cell heat map becomes a few dozen segments."""
    merged: list[list[str]] = []
    for text, style in runs:
        if not text:
            continue
        if merged and merged[-1][1] == style:
            merged[-1][0] += text
        else:
            merged.append([text, style])
    return tuple((text, style) for text, style in merged)


def line_width(line: Line) -> int:
    return sum(cell_len(text) for text, _ in line)


def to_strip(line: Line, width: int, styled: Callable[[str], Style]) -> Strip:
    """The line as one strip `width` cells wide; `styled(name)` is a segment's whole style (the
    widget's own for ""). Padded or cut here: one Strip built per line, drawn on every tick."""
    segments = [Segment(text, styled(name)) for text, name in line]
    used = line_width(line)
    if used < width:
        segments.append(Segment(" " * (width - used), styled("")))
    elif used > width:
        return Strip(segments, used).crop(0, width)
    return Strip(segments, width)


def fit(text: str, width: int) -> str:
    """Cut to `width` cells with an ellipsis, or pad: table cells keep their columns."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text + " " * (width - cell_len(text))
    out, used = [], 0
    for char in text:
        size = cell_len(char)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…" + " " * (width - used - 1)
