"""moreh-smi's box tables: each cell is its content with two spaces either side, columns as
wide as their widest content or header, `+---+` rules and `+===+` under the header."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def align(text: str, width: int, how: str) -> str:
    if how == "right":
        return text.rjust(width)
    if how in ("center", "center_floor"):
        spare = width - len(text)
        left = spare // 2 if how == "center_floor" else (spare + 1) // 2
        return " " * left + text + " " * (spare - left)
    return text.ljust(width)


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
            max([len(c.header), c.min_width, *(len(row[i]) for row in rows)])
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
        return "|" + text.rjust(self.inner - 2) + "  |"
