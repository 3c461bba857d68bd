#!/usr/bin/env bash
# One prepared run on a lent GPU machine: real-NVML tests, then the NVML and smi benchmarks,
# idle and under a PyTorch load. Wheels for what the image lacks are carried in .whl/.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "editable install failed"
export PATH="$(dirname "$(command -v python3)"):$PATH"
nvidia-smi -L; python3 --version; command -v moai-tui
out=${OUT:-/tmp/out}; mkdir -p "$out"
python3 -m pytest -q -p no:cacheprovider tests/gpu tests/test_nvml.py 2>&1 | tee "$out/pytest.txt"
echo "== idle"; python3 -m benchmarks.bench_nvml | tee "$out/bench_nvml_idle.txt"
REPEATS=11 python3 -m benchmarks.bench_smi | tee "$out/bench_smi.txt"
python3 - <<'PY' &
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 40
while time.time() < end:  # about 30 % duty: busy 0.3 s, idle 0.7 s
    t = time.time()
    while time.time() - t < 0.3:
        a = (a @ a) / 8192
    torch.cuda.synchronize(); time.sleep(0.7)
PY
load=$!; sleep 8
echo "== under load"; python3 -m benchmarks.bench_nvml | tee "$out/bench_nvml_load.txt"
MOAI_TUI_CONFIG_DIR=/tmp/mtg moai-tui smi --backend nvml | tee "$out/smi_nvml.txt"
MOAI_TUI_CONFIG_DIR=/tmp/mtg moai-tui smi -p --backend nvml | tee -a "$out/smi_nvml.txt"
kill $load 2>/dev/null; wait
