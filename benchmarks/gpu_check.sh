#!/usr/bin/env bash
# One prepared run on a lent GPU machine: real-NVML tests, a profile of `smi --backend nvml`,
# then benchmarks/gpu_run.py. moai-tui is built into a wheel here from this tree and installed
# from it with `pip install --target`, as a user installs it (not editable, whose import hook
# costs every one-shot about 15 ms); wheels for what the image lacks are carried in .whl/.
# Everything lands in $OUT (default /tmp/out): commit it under benchmarks/raw/ beside the
# results it gives. Exits non-zero when the GPU tests fail, after the benchmarks have run.
set -euo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
site=/tmp/site
wheels=$(mktemp -d)

# Built offline: .whl/ must carry a setuptools wheel (>= 70.1, which has bdist_wheel).
python3 -m pip wheel -q --no-deps --no-index --find-links .whl -w "$wheels" .
built=$(ls "$wheels"/moai_tui-*.whl)
carried=()
for wheel in .whl/*.whl; do
  # A copy of our own wheel there is left out: the one built above is what gets measured.
  if [ -e "$wheel" ] && [[ "$(basename "$wheel")" != moai_tui-* ]]; then
    carried+=("$wheel")
  fi
done
rm -rf "$site"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --target "$site" "$built" "${carried[@]}"
export PYTHONPATH=$site
export PATH="$site/bin:$PATH"

# The moai-tui measured is the wheel just built: first on PATH, imported from $site (asked
# from outside this tree, as the console script imports it), not an editable install, and its
# package files the same as this tree's.
[ "$(command -v moai-tui)" = "$site/bin/moai-tui" ] || {
  echo "gpu_check: moai-tui on PATH is $(command -v moai-tui), not $site/bin/moai-tui" >&2
  exit 1
}
imported=$(cd / && python3 -c 'import moai_tui; print(moai_tui.__file__)')
[ "$imported" = "$site/moai_tui/__init__.py" ] || {
  echo "gpu_check: python imports moai_tui from $imported, not from $site" >&2
  exit 1
}
if grep -qs '"editable": *true' "$site"/moai_tui-*.dist-info/direct_url.json \
  || ls "$site" | grep -q '^__editable__'; then
  echo "gpu_check: $site holds an editable install" >&2
  exit 1
fi
diff -r -x __pycache__ moai_tui "$site/moai_tui"
echo "moai-tui: $(basename "$built") installed in $site" | tee "$out/installed.txt"

# Bytecode as a user's machine has it after a first run: that image writes no .pyc (a
# profile there showed 22 modules, 31 ms, compiled on every one-shot, stdlib ones too). A cache
# prefix in /tmp takes the bytecode; compileall and one warm-up of each tool fill it.
env | grep '^PYTHON' || true
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pyc
python3 -m compileall -q -j 0 "$site" $(python3 -c '
import os, psutil, pynvml; print(pynvml.__file__, os.path.dirname(psutil.__file__))') >/dev/null
{ nvidia-smi -L; python3 --version; } | tee "$out/machine.txt"

gpu_tests=0
python3 -m pytest -q -p no:cacheprovider tests/gpu >"$out/pytest_gpu.txt" 2>&1 || gpu_tests=$?
tail -3 "$out/pytest_gpu.txt"

export MOAI_TUI_CONFIG_DIR=/tmp/mtg
tools=("python3 -c pass" "moai-tui smi --backend nvml" "moai-tui smi --backend simulator")
command -v nvitop >/dev/null && tools+=("nvitop --once")
for tool in "${tools[@]}"; do $tool >/dev/null; done
python3 -X importtime "$site/bin/moai-tui" smi --backend nvml 2>"$out/smi_importtime.txt" >/dev/null
python3 -m cProfile -s cumtime "$site/bin/moai-tui" smi --backend nvml >"$out/smi_profile_full.txt" 2>&1
head -60 "$out/smi_profile_full.txt" >"$out/smi_profile.txt"
rm "$out/smi_profile_full.txt"

bench=0
python3 -m benchmarks.gpu_run >"$out/gpu_run.txt" 2>&1 || bench=$?
tail -40 "$out/gpu_run.txt"
if [ "$gpu_tests" -ne 0 ]; then
  echo "gpu_check: the GPU tests failed (pytest exit $gpu_tests): $out/pytest_gpu.txt" >&2
  exit "$gpu_tests"
fi
exit "$bench"
