"""`moai-tui smi` one-shot wall time on the simulator, beside `python -c pass` (same run).

Also `nvidia-smi` and `nvitop --once` where installed, and the nvml backend on a GPU machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from benchmarks.common import median, moai_command, wall_times


def run(repeats: int = 21) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as config:
        env = {"MOAI_TUI_CONFIG_DIR": config}
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "moai-tui smi (simulator)": [*moai_command(), "smi", "--backend", "simulator"],
        }
        if shutil.which("nvidia-smi"):
            commands["nvidia-smi"] = ["nvidia-smi"]
            commands["moai-tui smi (nvml)"] = [*moai_command(), "smi", "--backend", "nvml"]
        if shutil.which("nvitop"):
            commands["nvitop --once"] = ["nvitop", "--once"]
        times = wall_times(commands, repeats, env)
    base = median(times["python -c pass"])
    for name, values in times.items():
        rows.append(
            {
                "figure": f"one-shot wall: {name}",
                "value": f"{median(values) * 1000:.1f} ms",
                "baseline": "python -c pass",
                "ratio": f"{median(values) / base:.2f}x",
                "target": "< 150 ms" if name.startswith("moai-tui smi (sim") else "",
                "ok": median(values) < 0.15 if name.startswith("moai-tui smi (sim") else None,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(int(os.environ.get("REPEATS", "21"))):
        print(row)
