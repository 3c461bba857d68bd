"""Helpers shared by the benchmarks: interleaved timing, medians, and the results table."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time


def moai_command() -> list[str]:
    exe = shutil.which("moai-tui")
    return [exe] if exe else [sys.executable, "-m", "moai_tui"]


def wall_times(commands: dict[str, list[str]], repeats: int, env: dict | None = None) -> dict:
    """Run each command `repeats` times, interleaved so drift hits all alike; seconds each."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    full_env = {**os.environ, **(env or {})}
    for _ in range(repeats):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, env=full_env, check=True)
            times[name].append(time.perf_counter() - start)
    return times


WINDOWS = 3  # CPU windows per figure, in one run: the median and the spread are reported
RAW: dict[str, list] = {}  # every measurement behind a row, written beside the results


def record(bench: str, data: dict) -> None:
    RAW.setdefault(bench, []).append(data)


def no_baseline() -> dict:
    """The baseline and ratio cells of a row that has no baseline measured in the same run."""
    return {"baseline": "none in this run", "ratio": ""}


def spread(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def write_section(path, name: str, text: str) -> None:
    """Put `text` in `path` between markers of its own, replacing what was there: each script
    owns one section of a results file and leaves the others as they are."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + block + "\n"
    path.write_text(new)
