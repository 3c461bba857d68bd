"""The GPU machine's figures in one go (see benchmarks/gpu_check.sh): NVML and the smi one-shot
(beside nvidia-smi and nvitop --once), and the dashboard beside nvitop and both baseline apps
(three windows each), idle and then under a PyTorch load at about 30 % duty, all in this one
run. Writes the table to $OUT/gpu_results.md and every measurement to $OUT/gpu_raw.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import bench_dashboard, bench_nvml, bench_smi
from benchmarks.common import RAW
from benchmarks.run import table

LOAD = """
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 600
while time.time() < end:
    t = time.time()
    while time.time() - t < 0.3:
        a = (a @ a) / 8192
    torch.cuda.synchronize(); time.sleep(0.7)
"""


def main() -> int:
    # Each window 20 s, three of them: over single 20 s windows our CPU beside nvitop's came
    # out 0.82x in one run and 1.06x in the next.
    window = float(os.environ.get("WINDOW", "20"))
    rows = [dict(r, figure=r["figure"] + ", idle") for r in bench_nvml.run()]
    rows += [dict(r, figure=r["figure"] + ", idle") for r in bench_smi.run(11)]
    rows += bench_dashboard.gpu_rows(window, ", idle")
    load = subprocess.Popen([sys.executable, "-c", LOAD])
    try:
        time.sleep(8)
        rows += [dict(r, figure=r["figure"] + ", under load") for r in bench_nvml.run()]
        rows += [dict(r, figure=r["figure"] + ", under load") for r in bench_smi.run(11)]
        rows += bench_dashboard.gpu_rows(window, ", under load")
    finally:
        load.terminate()
        load.wait()
    text = table(rows)
    print(text)
    out = Path(os.environ.get("OUT", "/tmp"))
    (out / "gpu_results.md").write_text(text + "\n")
    (out / "gpu_raw.json").write_text(json.dumps({"rows": rows, **RAW}, indent=1) + "\n")
    return 0  # targets missed are in the table (NO); a crash is the failure that exits 1


if __name__ == "__main__":
    raise SystemExit(main())
