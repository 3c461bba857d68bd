"""Slurm backend refresh against a real 64-node cluster on loopback (64 `slurmd`, 8 fake GPUs
each, tests/slurm_local.py): the cluster full (one 48-node job, sixteen 1-node jobs), 200 jobs
waiting. Per refresh: how many Slurm commands, their wall time, and moai-tui's own time beyond
them (wall and CPU of this process), over several runs.

    nice -n 10 python3 -m benchmarks.bench_slurm      # about a minute; updates results.md

Needs root and Debian's slurmctld, slurmd, slurm-client and munge (as the tests).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import median, no_baseline, p95

ROOT = Path(__file__).resolve().parents[1]
NODES = 64
WAITING = 200
RUNS = 5
REFRESHES = 20
ROW_PREFIX = "| slurm refresh"


def scene(cluster) -> None:
    def sbatch(*args: str) -> None:
        done = cluster.client(["sbatch", "-o", "/dev/null", *args, "--wrap", "sleep 3600"])
        assert done.returncode == 0, done.stderr

    sbatch("-J", "llm", "-N48", "--gpus-per-node=8")
    for i in range(16):
        sbatch("-J", f"ft{i}", "--gpus=8")
    for i in range(WAITING):
        sbatch("--uid=nobody", "-J", f"wait{i}", f"-N{1 + i % 4}", "--gpus-per-node=8")
    cluster.wait_for(
        lambda: sum(" RUNNING " in line for line in cluster.jobs()) == 17, 120, "jobs to run"
    )


def measure(environ: dict) -> list[dict]:
    """One run: REFRESHES refreshes, each past the poll interval so each asks slurmctld."""
    from moai_tui.backends.slurm import Commands, SlurmBackend
    from moai_tui.config import SlurmSettings

    class Timed(Commands):
        seconds = 0.0

        def run(self, argvs):
            started = time.perf_counter()
            try:
                return super().run(argvs)
            finally:
                self.seconds += time.perf_counter() - started

    now = [0.0]
    commands = Timed(timeout=30.0, environ=environ)
    backend = SlurmBackend(SlurmSettings(interval=1.0), commands=commands, clock=lambda: now[0])
    out = []
    for _ in range(REFRESHES):
        now[0] += 2.0
        count, inside = commands.count, commands.seconds
        wall, cpu = time.perf_counter(), time.process_time()
        snapshot = backend.sample()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        commands_s = commands.seconds - inside
        out.append(
            {
                "commands": commands.count - count,
                "commands_s": commands_s,
                "own_s": wall - commands_s,
                "cpu_s": cpu,
                "gpus": sum(len(n.gpus) for n in snapshot.nodes),
                "jobs": len(snapshot.jobs),
            }
        )
    return out


def rows(runs: list[list[dict]]) -> list[dict]:
    def spread(key: str) -> str:
        medians = [median([r[key] for r in run]) * 1000 for run in runs]
        every = [r[key] * 1000 for run in runs for r in run]
        return (
            f"{statistics.median(medians):.1f} ms (medians of {len(runs)} runs "
            f"{min(medians):.1f}-{max(medians):.1f}, p95 {p95(every):.1f})"
        )

    every = [r for run in runs for r in run]
    commands = max(r["commands"] for r in every)
    own_ok = max(median([r["own_s"] for r in run]) for run in runs) < 0.1
    last = every[-1]
    scale = f"{NODES} nodes, {last['gpus']} GPUs, {last['jobs']} GPU jobs"
    return [
        {
            "figure": f"slurm refresh, {scale}: commands",
            "value": f"{commands} per refresh",
            **no_baseline(),
            "target": "<= 3",
            "ok": commands <= 3,
        },
        {
            "figure": f"slurm refresh, {scale}: moai-tui's own wall time",
            "value": spread("own_s"),
            "baseline": f"the commands: {spread('commands_s')}",
            "ratio": "",
            "target": "< 100 ms",
            "ok": own_ok,
        },
        {
            "figure": f"slurm refresh, {scale}: moai-tui's CPU",
            "value": spread("cpu_s"),
            **no_baseline(),
            "target": "",
            "ok": None,
        },
    ]


def run() -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from slurm_local import LocalSlurm, missing_binaries

    if missing_binaries():
        print(f"slurm benchmark skipped: {missing_binaries()} not installed", file=sys.stderr)
        return []
    directory = Path(tempfile.mkdtemp(prefix="moai-slurm-bench-"))
    cluster = LocalSlurm(directory, nodes=NODES)
    try:
        cluster.start(timeout=120)
        scene(cluster)
        return rows([measure(cluster.env) for _ in range(RUNS)])
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def update_results(new_rows: list[dict], path: Path = ROOT / "benchmarks" / "results.md") -> None:
    """Replace the slurm rows of results.md's table, keeping the other figures as they are."""
    from benchmarks.run import table

    lines = [line for line in path.read_text().splitlines() if not line.startswith(ROW_PREFIX)]
    fresh = table(new_rows).splitlines()[2:]
    last_row = max(i for i, line in enumerate(lines) if line.startswith("|"))
    lines[last_row + 1 : last_row + 1] = fresh
    note = "Slurm rows: `python3 -m benchmarks.bench_slurm`"
    lines = [line for line in lines if not line.startswith(note)]
    lines.append(f"\n{note}, {time.strftime('%Y-%m-%d %H:%M')}, niced, 2-core VM.")
    path.write_text("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    measured = run()
    from benchmarks.run import table

    print(table(measured))
    if measured:
        update_results(measured)
