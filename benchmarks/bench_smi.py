"""`moai-tui smi` one-shot wall time on the simulator, beside `python -c pass` (same run).

On a GPU machine also the nvml backend beside `nvidia-smi`, `nvitop --once` (target: half of
it) and the floor of any Python NVML tool (interpreter, pynvml import, nvmlInit).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from benchmarks.common import median, moai_command, record, wall_times

NVML_FLOOR = "import pynvml; pynvml.nvmlInit(); pynvml.nvmlDeviceGetCount()"


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
            # What any Python NVML tool pays before its first query: the floor for the row below.
            commands["python: import pynvml, nvmlInit"] = [sys.executable, "-c", NVML_FLOOR]
            commands["moai-tui smi (nvml)"] = [*moai_command(), "smi", "--backend", "nvml"]
        if shutil.which("nvitop"):
            commands["nvitop --once"] = ["nvitop", "--once"]
        times = wall_times(commands, repeats, env)
    record("smi", {"wall_s": times})
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
    if "nvitop --once" in times and "moai-tui smi (nvml)" in times:
        ours, nvitop = median(times["moai-tui smi (nvml)"]), median(times["nvitop --once"])
        rows.append(
            {
                "figure": "one-shot wall: moai-tui smi (nvml) vs nvitop --once",
                "value": f"{ours * 1000:.1f} ms",
                "baseline": f"nvitop --once: {nvitop * 1000:.1f} ms",
                "ratio": f"{ours / nvitop:.2f}x",
                "target": "<= 0.5x",
                "ok": ours <= 0.5 * nvitop,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(int(os.environ.get("REPEATS", "21"))):
        print(row)
