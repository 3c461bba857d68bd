"""Dashboard cost at 1 Hz in 120x40 pseudo-terminals: CPU over a window for Small, 4xLarge and
48xLarge beside the naive baseline (all running in the same window), time to first full frame,
key press to flavor picker (p50, p95), resident memory. The long soak is benchmarks/soak.py."""

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

from benchmarks.common import median, moai_command, p95
from benchmarks.pty_app import PtyApp
from moai_tui.backends.simulator import sim_clock
from moai_tui.catalog import load_catalog
from moai_tui.model import JobRequest
from moai_tui.state import StateStore

FLAVORS = {"Small": "Small.64GB", "4xLarge": "4xLarge.2048GB", "48xLarge": "48xLarge.24576GB"}
NAIVE_ROWS = {"naive 32 rows": 32, "naive 384 rows": 384}


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


def cpu_over_window(apps: dict[str, PtyApp], window: float) -> dict[str, float]:
    """% of a core each app used over the same window, after 3 s to leave start-up out."""
    time.sleep(3.0)
    before = {name: app.cpu_seconds() for name, app in apps.items()}
    started = time.perf_counter()
    time.sleep(window)
    elapsed = time.perf_counter() - started
    return {
        name: 100.0 * (app.cpu_seconds() - before[name]) / elapsed for name, app in apps.items()
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
        for name, count in NAIVE_ROWS.items():
            apps[name] = PtyApp(
                [sys.executable, str(Path(__file__).with_name("naive_app.py")), str(count)], {}
            )
        cpu = cpu_over_window(apps, window)
        rss = {name: app.rss_mb() for name, app in apps.items()}
        for name in NAIVE_ROWS:
            apps.pop(name).stop()
        baseline = {
            "Small": "naive 32 rows",
            "4xLarge": "naive 32 rows",
            "48xLarge": "naive 384 rows",
        }
        targets = {
            "4xLarge": ("<= 0.5x naive", lambda v, b: v <= 0.5 * b),
            "48xLarge": ("< 3 % of a core", lambda v, b: v < 3.0),
        }
        for name in FLAVORS:
            base = cpu[baseline[name]]
            target, check = targets.get(name, ("", None))
            rows.append(
                {
                    "figure": f"dashboard CPU at 1 Hz, {name} (120x40)",
                    "value": f"{cpu[name]:.2f} % core",
                    "baseline": f"{baseline[name]}: {base:.2f} %",
                    "ratio": f"{cpu[name] / base:.2f}x",
                    "target": target,
                    "ok": check(cpu[name], base) if check else None,
                }
            )
        for name in FLAVORS:
            rows.append(
                {
                    "figure": f"first full frame, {name}",
                    "value": f"{first_frame[name] * 1000:.0f} ms",
                    "baseline": "",
                    "ratio": "",
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
        rows.append(
            {
                "figure": "key press to picker drawn (4xLarge)",
                "value": f"p50 {median(latencies) * 1000:.1f} ms, "
                f"p95 {p95(latencies) * 1000:.1f} ms",
                "baseline": "",
                "ratio": "",
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


if __name__ == "__main__":
    for row in run(float(os.environ.get("WINDOW", "20"))):
        print(row)


def gpu_rows(window: float = 20.0) -> list[dict]:
    """On a GPU machine: the dashboard on real NVML beside nvitop's monitor and the naive app,
    all in 120x40 pseudo-terminals over the same window."""
    import shutil

    apps: dict[str, PtyApp] = {}
    config = tempfile.mkdtemp(prefix="moai-bench-")
    try:
        apps["moai-tui (nvml)"] = PtyApp(
            [*moai_command(), "--backend", "nvml"], {"MOAI_TUI_CONFIG_DIR": config}
        )
        apps["moai-tui (nvml)"].wait_for("● live")
        apps["naive 32 rows"] = PtyApp(
            [sys.executable, str(Path(__file__).with_name("naive_app.py")), "32"], {}
        )
        if shutil.which("nvitop"):
            apps["nvitop"] = PtyApp(["nvitop"], {})
        cpu = cpu_over_window(apps, window)
    finally:
        for app in apps.values():
            app.stop()
    ours = cpu["moai-tui (nvml)"]
    rows = [
        {
            "figure": "dashboard CPU at 1 Hz, nvml (120x40)",
            "value": f"{ours:.2f} % core",
            "baseline": f"naive 32 rows: {cpu['naive 32 rows']:.2f} %",
            "ratio": f"{ours / cpu['naive 32 rows']:.2f}x",
            "target": "",
            "ok": None,
        }
    ]
    if "nvitop" in cpu:
        rows.append(
            {
                "figure": "dashboard CPU at 1 Hz, nvml vs nvitop",
                "value": f"{ours:.2f} % core",
                "baseline": f"nvitop: {cpu['nvitop']:.2f} %",
                "ratio": f"{ours / cpu['nvitop']:.2f}x",
                "target": "<= nvitop",
                "ok": ours <= cpu["nvitop"],
            }
        )
    return rows
