"""The GPU machine's figures in one go (see benchmarks/gpu_check.sh): NVML and the smi one-shot
(beside nvidia-smi and nvitop --once) idle and under a PyTorch load at about 30 % duty, and the
dashboard beside nvitop and the naive app, all in this one run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import bench_dashboard, bench_nvml, bench_smi
from benchmarks.run import table

LOAD = """
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 200
while time.time() < end:
    t = time.time()
    while time.time() - t < 0.3:
        a = (a @ a) / 8192
    torch.cuda.synchronize(); time.sleep(0.7)
"""


def main() -> int:
    rows = [dict(r, figure=r["figure"] + ", idle") for r in bench_nvml.run()]
    rows += [dict(r, figure=r["figure"] + ", idle") for r in bench_smi.run(11)]
    load = subprocess.Popen([sys.executable, "-c", LOAD])
    try:
        time.sleep(8)
        rows += [dict(r, figure=r["figure"] + ", under load") for r in bench_nvml.run()]
        rows += [dict(r, figure=r["figure"] + ", under load") for r in bench_smi.run(11)]
        # 60 s: over 20 s our CPU beside nvitop's came out 0.82x in one run and 1.06x in the next.
        rows += bench_dashboard.gpu_rows(float(os.environ.get("WINDOW", "60")))
    finally:
        load.terminate()
        load.wait()
    text = table(rows)
    print(text)
    out = Path(os.environ.get("OUT", "/tmp"))
    (out / "gpu_results.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
