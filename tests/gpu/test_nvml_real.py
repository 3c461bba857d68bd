"""The NVML backend on real hardware. Skipped only where no NVIDIA driver is present (CI has
none); run on a GPU machine, where every assertion of the fake-NVML tests is checked for real."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import DRIVER, run_cli

pytestmark = pytest.mark.skipif(not DRIVER, reason="no NVIDIA driver on this machine")


def nvidia_smi(query: str) -> list[list[str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]


def test_backend_reads_every_gpu_like_nvidia_smi():
    from moai_tui.backends.nvml import NvmlBackend

    backend = NvmlBackend()
    snapshot = backend.sample()
    reference = nvidia_smi("name,memory.total,driver_version,uuid")
    gpus = snapshot.nodes[0].gpus
    assert len(gpus) == len(reference)
    for gpu, (name, total, driver, uuid) in zip(gpus, reference, strict=True):
        assert gpu.model == name and not gpu.lost and gpu.uuid == uuid
        assert abs(gpu.mem_total_mib - int(total)) <= 1
        assert 0 <= gpu.util <= 100 and 0 <= gpu.mem_util <= 100
        assert 10 <= gpu.temp_c <= 110 and gpu.power_w > 10
        assert snapshot.version_current == driver
    backend.close()


def test_smi_on_nvml(config_dir):
    result = run_cli("smi", "--backend", "nvml")
    assert result.returncode == 0, result.stderr
    driver = nvidia_smi("driver_version")[0][0]
    assert f"Current Version: {driver}" in result.stdout
    assert run_cli("smi", "-v", "--backend", "nvml").stdout == f"NVIDIA driver {driver}\n"


TORCH_JOB = (
    "import os, sys, time, torch\n"
    "x = torch.empty(2 * 1024**3, dtype=torch.uint8, device='cuda')\n"
    "a = torch.randn(4096, 4096, device='cuda')\n"
    "print(os.environ['CUDA_VISIBLE_DEVICES'], os.getpid(), flush=True)\n"
    "end = time.time() + 12\n"
    "while time.time() < end:\n"
    "    a = a @ a; a = a / a.norm(); torch.cuda.synchronize()\n"
)


def test_run_a_real_cuda_job_and_see_it(config_dir):
    """A real PyTorch job through `moai-tui run`: its GPU, its memory, its pid in smi."""
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.fail(
            "torch is not installed on this GPU machine: the one real end-to-end `run` test "
            "needs a CUDA job (pip install torch)"
        )
    gpus_now = nvidia_smi("index,uuid,memory.used")
    index_of = {uuid: index for index, uuid, _ in gpus_now}
    before = {index: int(used) for index, _, used in gpus_now}
    launcher = subprocess.Popen(
        ["moai-tui", "run", "--backend", "nvml", "--", sys.executable, "-c", TORCH_JOB],
        stdout=subprocess.PIPE,
        text=True,
    )
    visible, pid = launcher.stdout.readline().split()
    # The launcher picks the least loaded GPU, any of them on a machine with several, and names
    # it by UUID (by index where NVML gave none). The one it named is the one whose memory grew
    # by the job's 2 GiB (nvidia-smi's word, not ours).
    index = index_of.get(visible, visible)
    assert index in before, (visible, index_of)
    seen = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        doc = json.loads(run_cli("smi", "--backend", "nvml", "--json").stdout)
        procs = [p for p in doc["processes"] if p["pid"] == int(pid)]
        if procs and (doc["devices"][0]["memory_used_mib"] or 0) >= 2048:
            seen = doc
            break
        time.sleep(0.5)
    assert seen is not None, "the job never showed in smi --json"
    after = {i: int(used) for i, used in nvidia_smi("index,memory.used")}
    assert after[index] - before[index] >= 2048
    gpus = seen["cluster"]["nodes"][0]["gpus"]
    assert gpus[int(index)]["job_id"] == seen["devices"][0]["job_id"] is not None
    assert seen["devices"][0]["utilization"] is not None
    busy = run_cli("switch", "--backend", "nvml", "-M", "1")
    assert busy.returncode == 1 and "in use" in busy.stderr
    assert launcher.wait(timeout=60) == 0
    assert "Processes:" not in run_cli("smi", "--backend", "nvml").stdout
