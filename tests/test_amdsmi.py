"""The amdsmi backend: AMD's real `amdsmi` package over a fake libamd_smi (tests/fake_amdsmi.py),
and the real package's import path on this machine, which has no ROCm.

No AMD GPU is available to this project's machines: nothing here ran on one.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import run_cli
from fake_amdsmi import FakeAmdSmi, FakeProcess, forget_amdsmi, mi250_node, mi300x_cpx

from moai_tui.backends import open_backend
from moai_tui.backends.amd import (
    FAILING_LIMIT,
    MISSING_PACKAGE,
    MISSING_ROCM,
    AmdSmiBackend,
    load_amdsmi,
)
from moai_tui.cli import main
from moai_tui.config import Config
from moai_tui.errors import BackendError
from moai_tui.launcher import allowed_gpus, visibility_env
from moai_tui.model import Gpu

HERE = Path(__file__).parent
NO_PERM, DRIVER_NOT_LOADED, NOT_SUPPORTED = 10, 34, 2  # amdsmi_status_t
MOAI_FLAVORS = ["Small.64GB", "Medium.128GB", "Large.256GB", "xLarge.512GB"]


@pytest.fixture
def amd(monkeypatch):
    """Install a fake AMD machine: amd(gpus=..., failing=...) -> FakeAmdSmi."""

    def install(**kwargs) -> FakeAmdSmi:
        return FakeAmdSmi(**kwargs).install(monkeypatch)

    yield install
    forget_amdsmi()


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# Readings -----------------------------------------------------------------------------------
def test_mi250_node_every_gcd_in_rocr_order(amd):
    fake = amd()
    snapshot = AmdSmiBackend().sample()
    gpus = snapshot.nodes[0].gpus
    assert [g.index for g in gpus] == list(range(8))
    # The library lists GCDs in PCI order; GPU n here is ROCr's (HIP's) device n.
    by_hip = {g.hip_id: g for g in fake.gpus}
    assert [g.uuid for g in gpus] == [by_hip[n].uuid for n in range(8)]
    assert [g.util for g in gpus] == [float(by_hip[n].gfx) for n in range(8)]
    first = gpus[0]
    assert first.model == "AMD Instinct MI250X"  # the market name, not the PCI database's
    assert (first.mem_used_mib, first.mem_total_mib) == (by_hip[0].vram_used_mib, 65520)
    assert (first.temp_c, first.edge_temp_c, first.mem_temp_c) == (48.0, 41.0, 52.0)
    assert first.mem_util == float(by_hip[0].umc) and first.power_w == 95.0
    assert (first.compute_partition, first.memory_partition, first.partition_id) == ("", "", None)
    assert snapshot.platform == "amdgpu driver" and snapshot.version_current == "6.10.5"
    assert snapshot.local and snapshot.backend == "amdsmi"


def test_mi300x_in_cpx_mode_is_eight_gpus(amd):
    amd(gpus=mi300x_cpx())
    gpus = AmdSmiBackend().sample().nodes[0].gpus
    assert len(gpus) == 8 and {g.model for g in gpus} == {"AMD Instinct MI300X OAM"}
    assert [g.partition_id for g in gpus] == list(range(8))
    assert {(g.compute_partition, g.memory_partition) for g in gpus} == {("CPX", "NPS1")}
    primary, other = gpus[0], gpus[5]
    assert (primary.util, primary.temp_c, primary.power_w) == (20.0, 55.0, 250.0)
    assert primary.edge_temp_c is None  # MI300 has no edge sensor: NotSupported
    # Board-wide readings live on partition 0: the library's N/A is None, its 0 W stays 0.
    assert (other.util, other.mem_util, other.temp_c, other.mem_temp_c) == (None,) * 4
    assert other.power_w == 0.0 and other.mem_total_mib == 24576


def test_not_supported_fields_are_dashes(amd, config_dir, monkeypatch):
    amd(failing={"amdsmi_get_power_info": NOT_SUPPORTED, "amdsmi_get_temp_metric": NOT_SUPPORTED})
    gpu = AmdSmiBackend().sample().nodes[0].gpus[0]
    assert (gpu.power_w, gpu.temp_c, gpu.edge_temp_c, gpu.mem_temp_c) == (None,) * 4
    assert gpu.util is not None and not gpu.lost
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["smi", "--backend", "amdsmi", "--json"]) == 0
    doc = json.loads(out.getvalue())
    shown = doc["cluster"]["nodes"][0]["gpus"][0]
    assert shown["power_w"] is None and shown["temp_c"] is None and shown["util"] is not None


def test_gpu_that_stops_answering_is_lost_and_others_go_on(amd):
    fake = amd()
    backend = AmdSmiBackend()
    position = next(i for i, g in enumerate(fake.gpus) if g.hip_id == 2)  # ROCr's GPU 2
    fake.gone.add(position)
    for _ in range(FAILING_LIMIT - 1):  # a hiccup is not a loss
        gpus = backend.sample().nodes[0].gpus
        assert not gpus[2].lost and gpus[2].util is None and gpus[3].util is not None
    gpus = backend.sample().nodes[0].gpus
    assert [g.lost for g in gpus] == [i == 2 for i in range(8)]
    assert gpus[2].uuid == fake.gpus[position].uuid  # still named
    fake.gone.clear()  # once lost, not asked again
    asked = fake.calls["amdsmi_get_gpu_activity"]
    assert backend.sample().nodes[0].gpus[2].lost
    assert fake.calls["amdsmi_get_gpu_activity"] == asked + 7


def test_nothing_readable_but_answering_is_not_lost(amd):
    """NotSupported / NoPermission on every reading is a GPU that answers: dashes, not lost."""
    amd(
        failing={
            "amdsmi_get_gpu_activity": NOT_SUPPORTED,
            "amdsmi_get_gpu_vram_usage": NOT_SUPPORTED,
            "amdsmi_get_power_info": NO_PERM,
            "amdsmi_get_temp_metric": NOT_SUPPORTED,
        }
    )
    backend = AmdSmiBackend()
    for _ in range(FAILING_LIMIT + 1):
        gpu = backend.sample().nodes[0].gpus[0]
        assert not gpu.lost and (gpu.util, gpu.mem_used_mib, gpu.power_w) == (None,) * 3


def test_one_failing_tick_then_answers_is_not_lost(amd):
    fake = amd()
    backend = AmdSmiBackend()
    fake.gone.add(0)
    backend.sample()
    fake.gone.clear()
    for _ in range(FAILING_LIMIT):
        assert not any(g.lost for g in backend.sample().nodes[0].gpus)


def test_permission_denied_on_processes_keeps_readings(amd):
    fake = amd(failing={"amdsmi_get_gpu_process_list": NO_PERM})
    fake.gpus[0].processes = [FakeProcess(os.getpid(), "python", 2 << 30)]
    snapshot = AmdSmiBackend().sample()
    assert snapshot.jobs == () and all(g.util is not None for g in snapshot.nodes[0].gpus)


def test_permission_denied_at_init_is_one_line(amd, config_dir, capsys):
    amd(init_status=NO_PERM)
    with pytest.raises(BackendError, match="video and render groups"):
        AmdSmiBackend()
    assert main(["smi", "--backend", "amdsmi"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "moai-tui: amdsmi backend: permission denied opening the GPUs "
        "(is this user in the video and render groups?)\n"
    )


def test_driver_not_loaded_is_one_line(amd, config_dir, capsys):
    amd(init_status=DRIVER_NOT_LOADED)
    assert main(["smi", "--backend", "amdsmi"]) == 1
    assert capsys.readouterr().err == "moai-tui: amdsmi backend: the amdgpu driver is not loaded\n"


def test_no_gpu_reported(amd):
    amd(gpus=[])
    with pytest.raises(BackendError, match="^amdsmi backend: ROCm reports no AMD GPU$"):
        AmdSmiBackend()


def test_processes_vram_and_gfx_share_on_the_slow_cadence(amd):
    fake = amd()
    clock = Clock()
    me = os.getpid()
    on_gpu1 = next(g for g in fake.gpus if g.hip_id == 1)
    on_gpu1.processes = [FakeProcess(me, "python", 3 << 30, gfx_ns=10**9)]
    backend = AmdSmiBackend(clock=clock, process_interval=3.0)
    first = backend.sample()
    (job,) = first.jobs
    assert (job.pid, job.gpus, job.mem_used_mib) == (me, (f"{first.host}:1",), 3072)
    assert job.util is None  # one look at its GFX time: no rate yet
    assert job.command == " ".join(psutil.Process(me).cmdline())
    assert first.nodes[0].gpus[1].job_id == me
    listed = fake.calls["amdsmi_get_gpu_process_list"]
    clock.now += 1.0
    on_gpu1.processes[0].gfx_ns += 5 * 10**8
    backend.sample()
    assert fake.calls["amdsmi_get_gpu_process_list"] == listed  # not yet: slow tier
    clock.now += 3.0  # 4 s after the first look, 0.5 s of GFX time: 12.5 %
    assert backend.sample().jobs[0].util == pytest.approx(12.5)


# Missing pieces -----------------------------------------------------------------------------
def test_real_package_without_rocm_says_so_in_one_line(config_dir):
    """The real PyPI amdsmi on this machine (no ROCm): import prints two lines on stdout and
    raises KeyError; the user sees one line on stderr and nothing on stdout."""
    forget_amdsmi()
    probe = subprocess.run(
        [sys.executable, "-c", "import amdsmi"], capture_output=True, text=True, timeout=60
    )
    assert "Unable to find libamd_smi.so" in probe.stdout and "KeyError" in probe.stderr
    result = run_cli("smi", "--backend", "amdsmi")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"moai-tui: {MISSING_ROCM}\n"
    fallback = run_cli("smi", "--json")  # auto: neither NVML nor ROCm here, the simulator
    assert fallback.returncode == 0 and json.loads(fallback.stdout)["cluster"]["backend"] == (
        "simulator"
    )


def test_load_without_rocm_prints_nothing(capsys):
    forget_amdsmi()
    with pytest.raises(BackendError) as raised:
        load_amdsmi()
    assert str(raised.value) == MISSING_ROCM
    assert capsys.readouterr().out == ""


def test_package_not_installed(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(BackendError) as raised:
        load_amdsmi()
    assert str(raised.value) == MISSING_PACKAGE


def test_auto_picks_amd_after_nvml(amd, monkeypatch):
    from fake_nvml import FakeNvml

    FakeNvml(driver_gone=True).install(monkeypatch)
    amd()
    backend = open_backend("auto", Config())
    assert backend.name == "amdsmi" and backend.visible_devices_env == "ROCR_VISIBLE_DEVICES"
    backend.close()


def test_auto_falls_back_naming_both(amd, monkeypatch):
    from fake_nvml import FakeNvml

    FakeNvml(driver_gone=True).install(monkeypatch)
    amd(init_status=DRIVER_NOT_LOADED)
    monkeypatch.setattr("moai_tui.backends.shutil.which", lambda name: None)  # no Slurm here
    backend = open_backend("auto", Config())
    assert backend.name == "simulator"
    assert backend.notice == (
        "nvml backend: NVIDIA driver not loaded; amdsmi backend: the amdgpu driver is not "
        "loaded: showing the simulated MoAI cluster"
    )


# Flavors ------------------------------------------------------------------------------------
def test_mi250_node_offers_the_platforms_own_flavors(amd, config_dir, capsys):
    amd()
    catalog = AmdSmiBackend().local_catalog()
    assert [f.name for f in catalog.flavors] == MOAI_FLAVORS
    assert [(f.gpus, f.mib_per_gpu) for f in catalog.flavors] == [
        (1, 65520),
        (2, 65520),
        (4, 65520),
        (8, 65520),
    ]
    assert main(["switch", "--list", "--backend", "amdsmi"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in MOAI_FLAVORS) and "1.5xLarge" not in listed


def test_other_gpus_get_flavors_named_after_model_and_memory(amd):
    amd(gpus=mi300x_cpx())
    catalog = AmdSmiBackend().local_catalog()
    assert [f.name for f in catalog.flavors] == [
        "1xMI300X-OAM.24GB",
        "2xMI300X-OAM.48GB",
        "4xMI300X-OAM.96GB",
        "8xMI300X-OAM.192GB",
    ]


def test_four_gcds_take_the_moai_names_that_fit(amd):
    amd(gpus=mi250_node()[:4])
    names = [f.name for f in AmdSmiBackend().local_catalog().flavors]
    assert names == MOAI_FLAVORS[:3]


# run ----------------------------------------------------------------------------------------
def test_run_child_sees_rocr_indices_and_hip_from_zero():
    gpus = [Gpu("h", 5, uuid="u5"), Gpu("h", 2, uuid="u2")]
    assert visibility_env("ROCR_VISIBLE_DEVICES", gpus) == {
        "ROCR_VISIBLE_DEVICES": "5,2",
        "HIP_VISIBLE_DEVICES": "0,1",
    }
    assert visibility_env("CUDA_VISIBLE_DEVICES", gpus) == {"CUDA_VISIBLE_DEVICES": "u5,u2"}


def test_users_own_rocr_and_hip_variables_narrow_the_choice():
    gpus = [Gpu("h", i, uuid=f"{i:02x}ff740c-0000") for i in range(8)]
    env = {"ROCR_VISIBLE_DEVICES": "1,03ff,5,6"}
    assert [g.index for g in allowed_gpus(gpus, "ROCR_VISIBLE_DEVICES", env)] == [1, 3, 5, 6]
    # HIP numbers what ROCr leaves: its 0 and 2 are GPUs 1 and 5.
    env["HIP_VISIBLE_DEVICES"] = "0,2"
    assert [g.index for g in allowed_gpus(gpus, "ROCR_VISIBLE_DEVICES", env)] == [1, 5]
    assert [g.index for g in allowed_gpus(gpus, "ROCR_VISIBLE_DEVICES", {})] == list(range(8))
    # NVML's variable has no relative one: HIP_VISIBLE_DEVICES means nothing there.
    assert len(allowed_gpus(gpus, "CUDA_VISIBLE_DEVICES", {"HIP_VISIBLE_DEVICES": "0"})) == 8


def amd_moai(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "fake_amdsmi_main.py"), "--", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def amd_done(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    process = amd_moai(*args, env=env)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_run_on_amd_end_to_end(config_dir, tmp_path):
    """`moai-tui run` under auto on the fake MI250 node: NVML is missing here, so auto picks
    amdsmi; the two least-loaded GCDs by ROCr index, HIP numbering from 0, shown in smi while it
    runs, freed on exit."""
    from test_run import jobs, read_report, wait_for

    assert amd_done("switch", "-M", "Medium.128GB").returncode == 0
    report = tmp_path / "child.json"
    code = (
        "import os, json, time; json.dump({k: os.environ.get(k) for k in "
        "('ROCR_VISIBLE_DEVICES', 'HIP_VISIBLE_DEVICES', 'CUDA_VISIBLE_DEVICES')} | "
        f"{{'pid': os.getpid()}}, open({str(report)!r}, 'w')); time.sleep(30)"
    )
    launcher = amd_moai(
        "run", "--", sys.executable, "-c", code, env={"HIP_VISIBLE_DEVICES": "4,5,6,7"}
    )
    child = read_report(report)
    # The user's HIP_VISIBLE_DEVICES=4,5,6,7 leaves GPUs 4-7; the least loaded are 4 and 5.
    assert child["ROCR_VISIBLE_DEVICES"] == "4,5" and child["HIP_VISIBLE_DEVICES"] == "0,1"
    assert child["CUDA_VISIBLE_DEVICES"] is None
    (job,) = wait_for(lambda: [j for j in jobs(config_dir) if j.pid == child["pid"]])
    assert [loc.rsplit(":", 1)[1] for loc in job.assigned] == ["4", "5"]
    smi = amd_done("smi")
    assert str(child["pid"]) in smi.stdout and "Medium.128GB" in smi.stdout
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=20) == 128 + signal.SIGTERM
    assert jobs(config_dir) == ()


def test_partitions_survive_smi_json_and_snapshot_files(amd):
    from moai_tui.codec import snapshot_from_dict, snapshot_to_dict

    amd(gpus=mi300x_cpx())
    snapshot = AmdSmiBackend().sample()
    assert snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(snapshot)))) == snapshot


# exporter -----------------------------------------------------------------------------------
def test_exporter_serves_amd_names_and_labels(amd):
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import CollectorRegistry

    from moai_tui.exporter import SnapshotCollector

    fake = amd(gpus=mi300x_cpx())
    fake.gpus[1].processes = [FakeProcess(os.getpid(), "python", 1 << 30)]
    snapshot = AmdSmiBackend().sample()
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snapshot, None, "amd"))
    text = generate_latest(registry).decode()
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert not any(name.startswith("DCGM") for name in families)
    activity = {s.labels["gpu_id"]: s for s in families["gpu_gfx_activity"]}
    assert set(activity) == {"0"}  # partitions 1-7 read N/A: left out, as the exporter does
    labels = activity["0"].labels
    assert labels["card_series"] == "AMD Instinct MI300X OAM" and labels["gpu_partition_id"] == "0"
    assert (labels["gpu_compute_partition_type"], labels["gpu_memory_partition_type"]) == (
        "cpx",
        "nps1",
    )
    assert labels["hostname"] == snapshot.host and labels["driver_version"] == "6.10.5"
    assert labels["gpu_uuid"] == fake.gpus[0].uuid
    held = {s.labels["gpu_id"]: s.labels for s in families["gpu_used_vram"]}
    assert held["1"]["job_id"] == str(os.getpid()) and held["0"]["job_id"] == ""
    assert {s.value for s in families["gpu_total_vram"]} == {24576.0}  # MiB, as amdsmi says


def test_exporter_on_amdsmi_announces_amd_names(config_dir, tmp_path):
    process = amd_moai("exporter", "--backend", "amdsmi", "--listen", "127.0.0.1:0")
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving all nodes as device-metrics-exporter metrics on "), line
        url = line.rsplit(" on ", 1)[1].strip()
        body = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "gpu_gfx_activity{" in body and "DCGM_FI_DEV_GPU_UTIL" not in body
    finally:
        process.terminate()
        process.wait(10)
