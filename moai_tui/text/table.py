"""moreh-smi's box tables: each cell is its content with two spaces either side, columns as
wide as their widest content or header, `+---+` rules and `+===+` under the header.

Widths are terminal cells, not characters: a CJK command takes two cells a character and a
combining accent none, and the columns stay aligned. Cells must already be `printable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moai_tui.text.safe import cell_width


def align(text: str, width: int, how: str) -> str:
    spare = max(0, width - cell_width(text))
    if how == "right":
        return " " * spare + text
    if how in ("center", "center_floor"):
        left = spare // 2 if how == "center_floor" else (spare + 1) // 2
        return " " * left + text + " " * (spare - left)
    return text + " " * spare


def clip(text: str, width: int) -> str:
    """`text` cut to at most `width` cells, ending in '…' where it was cut."""
    if cell_width(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        used += cell_width(char)
        if used > width - 1:
            break
        out.append(char)
    return "".join(out) + "…"


@dataclass(frozen=True)
class Column:
    header: str
    align: str = "left"
    header_align: str = "center"
    min_width: int = 0


class Table:
    def __init__(self, columns: Sequence[Column], rows: Sequence[Sequence[str]]):
        self.columns = columns
        self.rows = rows
        self.widths = [
            max([cell_width(c.header), c.min_width, *(cell_width(row[i]) for row in rows)])
            for i, c in enumerate(columns)
        ]
        self.inner = sum(w + 4 for w in self.widths) + len(self.widths) - 1

    def rule(self, char: str = "-") -> str:
        return "+" + char * self.inner + "+"

    def line(self, cells: Sequence[str], how: Sequence[str]) -> str:
        parts = (f"  {align(c, w, h)}  " for c, w, h in zip(cells, self.widths, how, strict=True))
        return "|" + "|".join(parts) + "|"

    def header(self) -> str:
        return self.line([c.header for c in self.columns], [c.header_align for c in self.columns])

    def row(self, cells: Sequence[str]) -> str:
        return self.line(cells, [c.align for c in self.columns])

    def banner(self, text: str) -> str:
        # The versions in it come from the backend (a label of Prometheus): cut to fit.
        return "|" + align(clip(text, self.inner - 2), self.inner - 2, "right") + "  |"
