#!/usr/bin/env bash
# One prepared run on a lent GPU machine: real-NVML tests, a profile of `smi --backend nvml`,
# then benchmarks/gpu_run.py. Wheels for what the image lacks are carried in .whl/.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
  || echo "editable install failed"
export PATH="$(dirname "$(command -v python3)"):/tmp/site/bin:$PATH"
# Bytecode as a user's pip install leaves it: the wheels above go in with --no-compile and that
# image writes no .pyc, so every one-shot compiled pynvml, psutil, nvitop and moai_tui anew.
python3 -m compileall -q -j 0 /tmp/site moai_tui $(python3 -c '
import os, psutil, pynvml; print(pynvml.__file__, os.path.dirname(psutil.__file__))') >/dev/null
out=${OUT:-/tmp/out}; mkdir -p "$out"
nvidia-smi -L; python3 --version
python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/pytest_gpu.txt" | tail -3
export MOAI_TUI_CONFIG_DIR=/tmp/mtg
python3 -X importtime -m moai_tui smi --backend nvml 2>"$out/smi_importtime.txt" >/dev/null
python3 -m cProfile -s cumtime -m moai_tui smi --backend nvml 2>&1 | head -45 > "$out/smi_profile.txt"
python3 -m benchmarks.gpu_run 2>&1 | tee "$out/gpu_run.txt" | tail -25
