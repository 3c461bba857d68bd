#!/usr/bin/env bash
# One prepared run on a lent GPU machine: real-NVML tests, a profile of `smi --backend nvml`,
# then benchmarks/gpu_run.py. Wheels for what the image lacks are carried in .whl/, moai-tui's own
# among them (`pip wheel --no-deps -w .whl .`): installed as a user installs it, not editable,
# whose import hook costs every one-shot about 15 ms.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
export PATH="$(dirname "$(command -v python3)"):/tmp/site/bin:$PATH"
# Bytecode as a user's machine has it after a first run: that image writes no .pyc (a
# profile there showed 22 modules, 31 ms, compiled on every one-shot, stdlib ones too). A cache
# prefix in /tmp takes the bytecode; compileall and one warm-up of each tool fill it.
env | grep '^PYTHON' ; unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX=/tmp/pyc
python3 -m compileall -q -j 0 /tmp/site $(python3 -c '
import os, psutil, pynvml; print(pynvml.__file__, os.path.dirname(psutil.__file__))') >/dev/null
out=${OUT:-/tmp/out}; mkdir -p "$out"
nvidia-smi -L; python3 --version
python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/pytest_gpu.txt" | tail -3
export MOAI_TUI_CONFIG_DIR=/tmp/mtg
moai=/tmp/site/bin/moai-tui
for tool in "python3 -c pass" "$moai smi --backend nvml" "$moai smi --backend simulator" \
  "nvitop --once"; do $tool >/dev/null; done
python3 -X importtime "$moai" smi --backend nvml 2>"$out/smi_importtime.txt" >/dev/null
python3 -m cProfile -s cumtime "$moai" smi --backend nvml 2>&1 | head -60 > "$out/smi_profile.txt"
python3 -m benchmarks.gpu_run 2>&1 | tee "$out/gpu_run.txt" | tail -25
