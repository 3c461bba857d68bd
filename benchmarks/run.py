"""All benchmarks in one run: prints a table and writes benchmarks/results.md.

    python3 -m benchmarks.run      # about 4 minutes here
    python3 -m benchmarks.soak     # the 30-minute memory soak, separately

A row's baseline column names the baseline measured in the same run, or says there is none.
Every measurement behind the rows goes to benchmarks/raw/run.json. On a machine with an NVIDIA
driver the nvml rows are added (and nvidia-smi / nvitop where installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

from benchmarks import bench_dashboard, bench_prometheus, bench_serve, bench_slurm, bench_smi
from benchmarks.common import RAW, WINDOWS, no_baseline, record, write_section


def backend_refresh_rows() -> list[dict]:
    """Cost of one sample of the simulator (64 nodes) and of a replay, median of 50."""
    from moai_tui.backends.replay import ReplayBackend, load_recording
    from moai_tui.backends.simulator import SimulatorBackend
    from moai_tui.model import JobRequest

    now = [1_780_000_000.0]
    simulator = SimulatorBackend(clock=lambda: now[0], user="me")
    jobs = (JobRequest(1, 1, 0, "x", 384, 48, now[0] - 3600, "me"),)
    sim_times = []
    for _ in range(50):
        now[0] += 1
        started = time.perf_counter()
        snapshot = simulator.sample(jobs)
        sim_times.append(time.perf_counter() - started)
    trace = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nvml"
    record("backends", {"simulator_refresh_s": sim_times})
    rows = [
        {
            "figure": "simulator refresh, 64 nodes (512 GPUs), 48xLarge job",
            "value": f"{statistics.median(sim_times) * 1000:.2f} ms",
            **no_baseline(),
            "target": "",
            "ok": None,
        }
    ]
    if (trace / "h200-trace.jsonl").exists():
        replay = ReplayBackend(load_recording(trace / "h200-trace.jsonl"))
        replay_times = []
        for _ in range(50):
            started = time.perf_counter()
            replay.sample()
            replay_times.append(time.perf_counter() - started)
        record("backends", {"replay_refresh_s": replay_times})
        rows.append(
            {
                "figure": "replay refresh (H200 trace)",
                "value": f"{statistics.median(replay_times) * 1e6:.1f} us",
                **no_baseline(),
                "target": "",
                "ok": None,
            }
        )
    assert snapshot.nodes
    return rows


def nvml_rows(window: float) -> list[dict]:
    if not shutil.which("nvidia-smi"):
        return []
    from benchmarks import bench_nvml

    return bench_nvml.run() + bench_dashboard.gpu_rows(window)


def table(rows: list[dict]) -> str:
    lines = [
        "| figure | value | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = {True: "yes", False: "NO", None: ""}[row["ok"]]
        lines.append(
            f"| {row['figure']} | {row['value']} | {row['baseline']} | "
            f"{row['ratio']} | {row['target']} | {met} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=20.0, help="each CPU window, seconds")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    parser.add_argument("--raw", type=Path, default=Path(__file__).with_name("raw") / "run.json")
    parser.add_argument("--note", default="", help="a line under the header, e.g. how loaded")
    benches = {
        "smi": bench_smi.run,
        "backends": backend_refresh_rows,
        "nvml": lambda: nvml_rows(args.window),
        "prometheus": bench_prometheus.run,
        "slurm": bench_slurm.run,
        "dashboard": lambda: bench_dashboard.run(args.window),
        "serve": lambda: bench_serve.run(args.window) if bench_serve.available() else [],
    }
    parser.add_argument(
        "--only", default=",".join(benches), help=f"some of {','.join(benches)} (default all)"
    )
    args = parser.parse_args()
    chosen = args.only.split(",")
    if set(chosen) - set(benches):
        parser.error(f"--only: choose from {','.join(benches)}")
    rows = []
    for name in chosen:
        run = benches[name]
        print(f"running {name} ...", flush=True)
        rows += run()
    text = table(rows)
    print(text)
    when = time.strftime("%Y-%m-%d %H:%M")
    machine = f"{platform.node()} ({platform.machine()}, {platform.python_version()})"
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    header = (
        f"## `python3 -m benchmarks.run`, {when} on {machine}\n\n"
        f"CPU figures: median of {WINDOWS} windows of {args.window:g} s in one run (spread in "
        f"brackets), ratios window by window; a target is met only when every window meets "
        f"it. Load average at the end: {load}. Raw measurements: `benchmarks/raw/"
        f"{args.raw.name}`.{' ' + args.note if args.note else ''}\n\n"
    )
    if not args.out.exists():
        args.out.write_text("# Benchmark results\n")
    write_section(args.out, "benchmarks.run", header + text)
    args.raw.parent.mkdir(exist_ok=True)
    args.raw.write_text(
        json.dumps({"when": when, "machine": machine, "load": load, "rows": rows, **RAW}, indent=1)
        + "\n"
    )
    return 0 if all(row["ok"] is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
