"""The naive baseline of performance.md: a DataTable of N rows, every cell updated once a
second, plus a Sparkline. What a straightforward Textual dashboard costs."""

from __future__ import annotations

import random
import sys

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Sparkline


class NaiveApp(App):
    def __init__(self, rows: int):
        super().__init__()
        self.rows = rows
        self.history = [0.0] * 60

    def compose(self) -> ComposeResult:
        yield Sparkline(self.history)
        yield DataTable()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("GPU", "util", "mem", "temp", "power")
        for i in range(self.rows):
            table.add_row(str(i), "0", "0", "0", "0", key=str(i))
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        table = self.query_one(DataTable)
        for i in range(self.rows):
            key = str(i)
            table.update_cell(key, table.ordered_columns[1].key, f"{random.randint(0, 100)} %")
            table.update_cell(key, table.ordered_columns[2].key, f"{random.randint(0, 80000)} MiB")
            table.update_cell(key, table.ordered_columns[3].key, f"{random.randint(30, 90)} C")
            table.update_cell(key, table.ordered_columns[4].key, f"{random.randint(90, 700)} W")
        self.history = self.history[1:] + [random.random() * 100]
        self.query_one(Sparkline).data = self.history


if __name__ == "__main__":
    NaiveApp(int(sys.argv[1])).run()
