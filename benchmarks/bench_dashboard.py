"""Dashboard cost at 1 Hz in 120x40 pseudo-terminals: CPU for Small, 4xLarge and 48xLarge beside
two baselines, all running through the same three windows (benchmarks.common.WINDOWS): the naive
Textual app and the same app with batched updates. Each figure is the median of the three
windows with their spread, each ratio taken window by window, and a target is met only when the
worst window meets it. Also time to first full frame, key press to flavor picker (p50, p95),
resident memory. The long soak is benchmarks/soak.py."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import WINDOWS, median, moai_command, no_baseline, p95, record, spread
from benchmarks.pty_app import PtyApp
from moai_tui.backends.simulator import sim_clock
from moai_tui.catalog import load_catalog
from moai_tui.model import JobRequest
from moai_tui.state import StateStore

FLAVORS = {"Small": "Small.64GB", "4xLarge": "4xLarge.2048GB", "48xLarge": "48xLarge.24576GB"}
# baseline app -> (script, rows)
BASELINES = {
    "naive 32 rows": ("naive_app.py", 32),
    "naive 384 rows": ("naive_app.py", 384),
    "batched 32 rows": ("batched_app.py", 32),
    "batched 384 rows": ("batched_app.py", 384),
}
# dashboard -> the size of baseline it is set beside
BASELINE_ROWS = {"Small": 32, "4xLarge": 32, "48xLarge": 384}


SEEDED_JOB_AGE_S = 7200.0


def seeded_config(flavor: str) -> str:
    """A config dir whose device 0 has `flavor` and a simulated job already running on it.

    The job is submitted two hours back: one submitted now waits for free nodes (at 48xLarge up
    to an hour), and a dashboard whose job starts mid-measurement draws 384 idle GPUs turning
    busy. That start was the soak's "+2 MB step" at minute 15-21."""
    directory = tempfile.mkdtemp(prefix="moai-bench-")
    env = {**os.environ, "MOAI_TUI_CONFIG_DIR": directory}
    subprocess.run(
        [*moai_command(), "switch", "-M", flavor], env=env, check=True, capture_output=True
    )
    spec = load_catalog().get(flavor)
    job = JobRequest(
        job_id=424242,
        pid=4242,
        device=0,
        command="python train.py",
        gpus=spec.gpus,
        nodes=spec.nodes,
        submitted=sim_clock() - SEEDED_JOB_AGE_S,
        user=getpass.getuser(),
    )
    StateStore(Path(directory)).update(lambda state: replace(state, jobs=(job,)))
    smi = subprocess.run(
        [*moai_command(), "smi", "--json"], env=env, check=True, capture_output=True, text=True
    )
    if any(process["waiting"] for process in json.loads(smi.stdout)["processes"]):
        raise RuntimeError(f"the seeded {flavor} job still waits for GPUs: submit it earlier")
    return directory


def cpu_over_windows(apps: dict[str, PtyApp], window: float) -> dict[str, list[float]]:
    """% of a core each app used in each of WINDOWS consecutive windows, all apps through the
    same windows, after 3 s to leave start-up out."""
    time.sleep(3.0)
    shares: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(WINDOWS):
        before = {name: app.cpu_seconds() for name, app in apps.items()}
        started = time.perf_counter()
        time.sleep(window)
        elapsed = time.perf_counter() - started
        for name, app in apps.items():
            shares[name].append(100.0 * (app.cpu_seconds() - before[name]) / elapsed)
    return shares


def baseline_app(name: str) -> PtyApp:
    script, rows = BASELINES[name]
    return PtyApp([sys.executable, str(Path(__file__).with_name(script)), str(rows)], {})


def cpu_row(figure: str, ours: list[float], base_name: str, base: list[float], target=None):
    """A CPU row: medians and spreads over the windows, the ratio window by window; `target`
    (text, check of one window's (ours, base)) is met only if every window meets it."""
    ratios = [a / b for a, b in zip(ours, base, strict=True)]
    text, check = target or ("", None)
    return {
        "figure": figure,
        "value": f"{median(ours):.2f} % core ({spread(ours, '.2f')})",
        "baseline": f"{base_name}: {median(base):.2f} % ({spread(base, '.2f')})",
        "ratio": f"{median(ratios):.2f}x ({spread(ratios, '.2f')})",
        "target": text,
        "ok": all(check(a, b) for a, b in zip(ours, base, strict=True)) if check else None,
    }


def start_dashboard(flavor: str) -> PtyApp:
    config = seeded_config(flavor)
    return PtyApp(
        [*moai_command(), "--backend", "simulator", "--interval", "1"],
        {"MOAI_TUI_CONFIG_DIR": config},
    )


def run(window: float = 20.0, presses: int = 20) -> list[dict]:
    rows: list[dict] = []
    apps: dict[str, PtyApp] = {}
    first_frame: dict[str, float] = {}
    try:
        for name, flavor in FLAVORS.items():
            app = apps[name] = start_dashboard(flavor)
            app.wait_for("● live")  # drawn with the first sample's data
            first_frame[name] = time.perf_counter() - app.started
        for name in BASELINES:
            apps[name] = baseline_app(name)
        cpu = cpu_over_windows(apps, window)
        rss = {name: app.rss_mb() for name, app in apps.items()}
        record("dashboard", {"window_s": window, "cpu_percent": cpu, "rss_mb": rss})
        record("dashboard", {"first_frame_s": first_frame})
        for name in BASELINES:
            apps.pop(name).stop()
        targets = {
            "4xLarge": ("<= 0.5x naive, every window", lambda v, b: v <= 0.5 * b),
            "48xLarge": ("< 3 % of a core, every window", lambda v, b: v < 3.0),
        }
        for name in FLAVORS:
            for kind in ("naive", "batched"):
                base = f"{kind} {BASELINE_ROWS[name]} rows"
                rows.append(
                    cpu_row(
                        f"dashboard CPU at 1 Hz, {name} (120x40), vs {kind} app",
                        cpu[name],
                        base,
                        cpu[base],
                        targets.get(name) if kind == "naive" else None,
                    )
                )
        for name in FLAVORS:
            rows.append(
                {
                    "figure": f"first full frame, {name}",
                    "value": f"{first_frame[name] * 1000:.0f} ms (one start)",
                    **no_baseline(),
                    "target": "< 500 ms",
                    "ok": first_frame[name] < 0.5,
                }
            )
        rows.append(
            {
                "figure": "resident memory, 48xLarge",
                "value": f"{rss['48xLarge']:.1f} MB",
                "baseline": f"naive 384 rows: {rss['naive 384 rows']:.1f} MB",
                "ratio": f"{rss['48xLarge'] / rss['naive 384 rows']:.2f}x",
                "target": "< 60 MB",
                "ok": rss["48xLarge"] < 60,
            }
        )
        latencies = picker_latencies(apps["4xLarge"], presses)
        record("dashboard", {"picker_latency_s": latencies})
        rows.append(
            {
                "figure": "key press to picker drawn (4xLarge)",
                "value": f"p50 {median(latencies) * 1000:.1f} ms, "
                f"p95 {p95(latencies) * 1000:.1f} ms ({presses} presses)",
                **no_baseline(),
                "target": "p95 < 50 ms",
                "ok": p95(latencies) < 0.05,
            }
        )
    finally:
        for app in apps.values():
            app.stop()
    return rows


def picker_latencies(app: PtyApp, presses: int) -> list[float]:
    """Time from writing 'f' to the picker's title arriving on the terminal."""
    latencies = []
    for _ in range(presses):
        mark = app.mark()
        sent = time.perf_counter()
        app.send(b"f")
        app.wait_for("choose a flavor", since=mark, timeout=5)
        latencies.append(time.perf_counter() - sent)
        mark = app.mark()
        app.send(b"\x1b")
        time.sleep(0.3)
    return latencies


def gpu_rows(window: float = 20.0, label: str = "") -> list[dict]:
    """On a GPU machine: the dashboard on real NVML beside nvitop's monitor and both baseline
    apps, all in 120x40 pseudo-terminals through the same windows."""
    import shutil

    apps: dict[str, PtyApp] = {}
    config = tempfile.mkdtemp(prefix="moai-bench-")
    try:
        apps["moai-tui (nvml)"] = PtyApp(
            [*moai_command(), "--backend", "nvml"], {"MOAI_TUI_CONFIG_DIR": config}
        )
        apps["moai-tui (nvml)"].wait_for("● live")
        for name in ("naive 32 rows", "batched 32 rows"):
            apps[name] = baseline_app(name)
        if shutil.which("nvitop"):
            apps["nvitop"] = PtyApp(["nvitop"], {})
        cpu = cpu_over_windows(apps, window)
    finally:
        for app in apps.values():
            app.stop()
    record("dashboard (nvml)" + label, {"window_s": window, "cpu_percent": cpu})
    ours = cpu["moai-tui (nvml)"]
    rows = [
        cpu_row(f"dashboard CPU at 1 Hz, nvml (120x40), vs {name}", ours, name, cpu[name])
        for name in ("naive 32 rows", "batched 32 rows")
    ]
    if "nvitop" in cpu:
        rows.append(
            cpu_row(
                "dashboard CPU at 1 Hz, nvml vs nvitop",
                ours,
                "nvitop",
                cpu["nvitop"],
                ("<= nvitop, every window", lambda v, b: v <= b),
            )
        )
    return [dict(row, figure=row["figure"] + label) for row in rows]


if __name__ == "__main__":
    for row in run(float(os.environ.get("WINDOW", "20"))):
        print(row)
