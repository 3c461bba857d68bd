"""The stronger baseline beside benchmarks/naive_app.py: the same Textual app (a DataTable of N
rows and a Sparkline, the same random readings once a second), written with care: one
`update_cell` pass per tick inside `App.batch_update()`, touching only the cells whose text
changed. The dashboard's ratio to this says what its own design buys over a careful DataTable."""

from __future__ import annotations

import random
import sys

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Sparkline


class BatchedApp(App):
    def __init__(self, rows: int):
        super().__init__()
        self.rows = rows
        self.history = [0.0] * 60
        self.shown: dict[tuple[int, int], str] = {}

    def compose(self) -> ComposeResult:
        yield Sparkline(self.history)
        yield DataTable()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("GPU", "util", "mem", "temp", "power")
        for i in range(self.rows):
            table.add_row(str(i), "0", "0", "0", "0", key=str(i))
        self.columns = [column.key for column in table.ordered_columns]
        self.set_interval(1.0, self.tick)

    def readings(self) -> list[str]:
        # The naive app's readings, drawn the same way.
        return [
            f"{random.randint(0, 100)} %",
            f"{random.randint(0, 80000)} MiB",
            f"{random.randint(30, 90)} C",
            f"{random.randint(90, 700)} W",
        ]

    def tick(self) -> None:
        table = self.query_one(DataTable)
        with self.batch_update():
            for i in range(self.rows):
                for column, text in enumerate(self.readings(), start=1):
                    if self.shown.get((i, column)) != text:
                        self.shown[i, column] = text
                        table.update_cell(str(i), self.columns[column], text)
            self.history = self.history[1:] + [random.random() * 100]
            self.query_one(Sparkline).data = self.history


if __name__ == "__main__":
    BatchedApp(int(sys.argv[1])).run()
