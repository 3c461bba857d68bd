"""What serving costs: `moai-tui serve` with one headless Chromium connected, beside the terminal
dashboard in a 120x40 pseudo-terminal, all at 1 Hz on the same seeded 4xLarge config, measured
over the same windows. Three windows; the median and the spread (lowest-highest) of each.

    nice -n 10 python3 -m benchmarks.bench_serve     # writes its rows into results.md

The browser's page is sized to about 120x40 cells. Chromium's own CPU (drawing the canvas) is the
viewer's machine's cost, shown for scale."""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.bench_dashboard import seeded_config
from benchmarks.common import moai_command
from benchmarks.pty_app import PtyApp

WINDOWS = 3
FLAVOR = "4xLarge.2048GB"
WINDOW_SIZE = "1087,1000"  # about 120x40 cells of the page's 16 px Roboto Mono
RESULTS = Path(__file__).with_name("results.md")


def available() -> bool:
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        return False
    return shutil.which("chromium") is not None


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of a process and its live children (a browser is many processes)."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def dashboard_started(server: psutil.Process) -> bool:
    """The browser's dashboard has been exec'd (not just forked: its environ is its own)."""
    return any("moai_tui" in child.cmdline() for child in server.children())


def run(window: float = 20.0) -> list[dict]:
    config = seeded_config(FLAVOR)
    env = {**os.environ, "MOAI_TUI_CONFIG_DIR": config}
    terminal = PtyApp(
        [*moai_command(), "--backend", "simulator", "--interval", "1"],
        {"MOAI_TUI_CONFIG_DIR": config},
    )
    server = subprocess.Popen(
        [*moai_command(), "serve", "--listen", "127.0.0.1:0", "--backend", "simulator"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    browser = None
    profile = tempfile.mkdtemp(prefix="moai-bench-chromium-")
    try:
        terminal.wait_for("● live")
        url = re.search(r"http://\S+", server.stdout.readline()).group(0)
        browser = subprocess.Popen(
            [
                shutil.which("chromium"),
                "--headless",
                "--no-sandbox",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW_SIZE}",
                "--remote-debugging-port=0",  # stays open on the page
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        served = psutil.Process(server.pid)
        deadline = time.monotonic() + 60
        while not dashboard_started(served) and time.monotonic() < deadline:
            time.sleep(0.1)
        (dashboard,) = served.children()
        cells = dict(
            entry.split("=", 1)
            for entry in Path(f"/proc/{dashboard.pid}/environ").read_text().split("\0")
            if entry.startswith(("COLUMNS=", "ROWS="))
        )
        time.sleep(3.0)  # start-up left out, as for the terminal dashboards
        meters = {
            "server": lambda: sum(served.cpu_times()[:2]),  # its own: user + system
            "served dashboard": lambda: tree_cpu_seconds(dashboard),
            "terminal dashboard": terminal.cpu_seconds,
            "chromium": lambda: tree_cpu_seconds(psutil.Process(browser.pid)),
        }
        samples: dict[str, list[float]] = {name: [] for name in meters}
        for _ in range(WINDOWS):
            before = {name: meter() for name, meter in meters.items()}
            started = time.perf_counter()
            time.sleep(window)
            elapsed = time.perf_counter() - started
            for name, meter in meters.items():
                samples[name].append(100.0 * (meter() - before[name]) / elapsed)
    finally:
        if browser is not None:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        terminal.stop()
        shutil.rmtree(profile, ignore_errors=True)
    return rows(samples, window, f"{cells['COLUMNS']}x{cells['ROWS']}")


def rows(samples: dict[str, list[float]], window: float, cells: str) -> list[dict]:
    def shown(name: str) -> str:
        values = samples[name]
        return (
            f"{statistics.median(values):.2f} % core ({min(values):.2f}-{max(values):.2f}, "
            f"{len(values)} windows of {window:g} s)"
        )

    base = statistics.median(samples["terminal dashboard"])
    both = [s + d for s, d in zip(samples["server"], samples["served dashboard"], strict=True)]
    samples["server + served dashboard"] = both
    figures = (
        (f"serve: server process, one browser ({cells}) at 1 Hz, 4xLarge", "server"),
        (f"serve: the browser's dashboard process ({cells}), 4xLarge", "served dashboard"),
        (f"serve: server + dashboard, one browser ({cells}), 4xLarge", "server + served dashboard"),
        ("serve: headless Chromium drawing it (viewer's cost)", "chromium"),
    )
    return [
        {
            "figure": figure,
            "value": shown(name),
            "baseline": f"terminal dashboard (120x40): {shown('terminal dashboard')}",
            "ratio": f"{statistics.median(samples[name]) / base:.2f}x",
            "target": "",
            "ok": None,
        }
        for figure, name in figures
    ]


def update_results(new: list[dict]) -> None:
    """Put this benchmark's rows at the end of results.md's table, its note below the table
    (benchmarks.run rewrites the whole file, these rows included)."""
    from benchmarks.run import table

    note_prefix = "`serve:` rows:"
    lines = [
        line
        for line in RESULTS.read_text().splitlines()
        if not line.startswith(("| serve: ", note_prefix))
    ]
    end = max(i for i, line in enumerate(lines) if line.startswith("|")) + 1
    lines[end:end] = table(new).splitlines()[2:]
    while lines and not lines[-1].strip():
        lines.pop()
    lines.append(
        f"{note_prefix} {time.strftime('%Y-%m-%d %H:%M')}, "
        "`nice -n 10 python3 -m benchmarks.bench_serve`, 2-core VM shared with other work."
    )
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if not available():
        raise SystemExit("bench_serve needs the web extra and chromium")
    measured = run(float(os.environ.get("WINDOW", "20")))
    for row in measured:
        print(row["figure"], "|", row["value"], "|", row["baseline"], "|", row["ratio"])
    update_results(measured)
