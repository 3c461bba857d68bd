"""The NVML backend against the recorded H200/H100 answers, with faults injected."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DRIVER, run_cli
from fake_nvml import FakeNvml

from moai_tui.backends.nvml import NvmlBackend
from moai_tui.cli import main
from moai_tui.errors import BackendError
from moai_tui.model import Job, JobRequest
from moai_tui.state import Device, StateStore
from moai_tui.text.smi import render_gpus
from moai_tui.view import device_views


def test_values_as_recorded(monkeypatch):
    fake = FakeNvml(gpus=1, frame=120).install(monkeypatch)
    line = fake.trace[120]
    snapshot = NvmlBackend().sample()
    gpu = snapshot.nodes[0].gpus[0]
    assert gpu.model == "NVIDIA H200"
    assert gpu.util == line["util"]["ok"]["gpu"] and gpu.mem_util == line["util"]["ok"]["memory"]
    assert gpu.mem_used_mib == line["mem"]["ok"]["used"] // 2**20
    assert gpu.mem_total_mib == 143771 and gpu.temp_c == line["temp_c"]["ok"]
    assert gpu.power_w == pytest.approx(line["power_mW"]["ok"] / 1000)
    assert gpu.mem_temp_c is None  # not read: shown as '-'
    assert snapshot.version_current == "580.159.04" and snapshot.platform == "NVIDIA driver"
    assert snapshot.version_latest == "-"  # nothing measured a newer driver: not a copy
    assert gpu.uuid == "GPU-111a1675-4d51-786b-b21a-081019e305" + "00"  # the fake's per-GPU id
    assert sorted(j.pid for j in snapshot.jobs) == [439, 440]
    assert {j.mem_used_mib for j in snapshot.jobs} >= {2048}
    by_pid = {j.pid: j for j in snapshot.jobs}
    recorded = line["proc_util"]["ok"][0]
    assert recorded["pid"] == 439 and by_pid[439].util == recorded["smUtil"]
    assert by_pid[440].util is None  # the holder computes nothing


def test_h100_recording_too(monkeypatch):
    FakeNvml(model="h100", gpus=2).install(monkeypatch)
    snapshot = NvmlBackend().sample()
    assert [g.model for g in snapshot.nodes[0].gpus] == ["NVIDIA H100 80GB HBM3"] * 2


def test_process_utilization_not_found_reads_as_no_jobs(monkeypatch):
    fake = FakeNvml(gpus=1, frame=0).install(monkeypatch)  # "start": no processes yet
    assert fake.trace[0]["proc_util"]["error"] == "NVMLError_NotFound"
    snapshot = NvmlBackend().sample()
    assert snapshot.jobs == () and not snapshot.nodes[0].gpus[0].lost


# The NVML call the backend makes each tick -> the Gpu fields it fills, and the `smi -p` columns
# that show them (power has none: --json and the dashboard show it).
READS = {
    "util": (("util", "mem_util"), ("Dev Util", "Mem Util")),
    "mem": (("mem_used_mib", "mem_total_mib"), ("Mem Usage",)),
    "temp": (("temp_c",), ("Dev Temp",)),
    "power": (("power_w",), ()),
}
READINGS = ("util", "mem_util", "mem_used_mib", "mem_total_mib", "temp_c", "power_w")


def run_job_on_gpus(config_dir: Path, count: int) -> None:
    """A `moai-tui run` job of this process on GPUs 0..count-1 (count 1 or 2), as the launcher
    records it."""
    assert main(["switch", "--backend", "nvml", "-M", str(count)]) == 0  # 1, 2, 4 ... GPUs
    host = socket.gethostname()
    job = JobRequest(
        job_id=7,
        pid=os.getpid(),
        device=0,
        command="python train.py",
        gpus=count,
        nodes=1,
        submitted=time.time(),
        user=getpass.getuser(),
        kind="run",
        assigned=tuple(f"{host}:{i}" for i in range(count)),
    )
    StateStore(config_dir).update(lambda state: replace(state, jobs=(job,)))


def smi(capsys, *flags: str) -> str:
    capsys.readouterr()
    assert main(["smi", "--backend", "nvml", *flags]) == 0
    return capsys.readouterr().out


def gpu_cells(table: str) -> list[dict[str, str]]:
    """`smi -p`'s rows as {column: cell}."""
    lines = table.splitlines()
    header = [cell.strip() for cell in lines[1].split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.split("|")), strict=True)) for line in lines[3:-1]
    ]


@pytest.mark.parametrize("error", ["NVMLError_NotSupported", "NVMLError_NoPermission"])
@pytest.mark.parametrize("call", READS)
def test_unreadable_field_shows_dash_in_that_cell_only(
    monkeypatch, config_dir, capsys, call, error
):
    """One call fails on GPU 0: its cells show `-` (smi -p) and its fields are null (--json);
    every other reading of GPU 0, and all of GPU 1, still show."""
    FakeNvml(gpus=2, field_errors={(0, call): error}).install(monkeypatch)
    run_job_on_gpus(config_dir, 2)
    fields, columns = READS[call]
    first, second = gpu_cells(smi(capsys, "-p"))
    for column in ("Dev Temp", "Dev Util", "Mem Util", "Mem Usage"):
        assert (first[column] == "-") == (column in columns), (column, first)
        assert second[column] != "-", (column, second)
    assert first["Mem Temp"] == second["Mem Temp"] == "-"  # never read: not in NVML's tiers
    gpus = json.loads(smi(capsys, "--json"))["cluster"]["nodes"][0]["gpus"]
    assert [(name, gpus[0][name] is None) for name in READINGS] == [
        (name, name in fields) for name in READINGS
    ]
    assert all(gpus[1][name] is not None for name in READINGS)
    assert not gpus[0]["lost"] and not gpus[1]["lost"]


@pytest.mark.parametrize("error", ["NVMLError_NotSupported", "NVMLError_NoPermission"])
def test_unreadable_on_every_gpu_shows_dash_in_the_device_table(
    monkeypatch, config_dir, capsys, error
):
    """Utilization and memory unreadable on both GPUs of the device: its row in `smi` shows
    `-` for memory used and utilization, and --json says null."""
    errors = {(gpu, call): error for gpu in (0, 1) for call in ("util", "mem")}
    FakeNvml(gpus=2, field_errors=errors).install(monkeypatch)
    run_job_on_gpus(config_dir, 2)
    row = smi(capsys).splitlines()[5].split("|")
    assert "2xH200" in row[3] and row[4].strip() == "-" and row[6].strip() == "-"
    device = json.loads(smi(capsys, "--json"))["devices"][0]
    assert device["memory_used_mib"] is None and device["utilization"] is None


def test_gpu_lost_mid_run_is_marked_and_others_go_on(monkeypatch):
    fake = FakeNvml(gpus=4).install(monkeypatch)
    backend = NvmlBackend()
    assert not any(g.lost for g in backend.sample().nodes[0].gpus)
    fake.lost.add(2)
    gpus = backend.sample().nodes[0].gpus
    assert [g.lost for g in gpus] == [False, False, True, False]
    assert gpus[3].util is not None and gpus[2].util is None
    fake.lost.clear()  # once lost, stays lost: NVML handles do not come back
    assert backend.sample().nodes[0].gpus[2].lost


def test_lost_gpu_shown_in_smi_p(monkeypatch):
    fake = FakeNvml(gpus=2).install(monkeypatch)
    backend = NvmlBackend()
    fake.lost.add(1)
    snapshot = backend.sample()
    locations = tuple(g.location for g in snapshot.nodes[0].gpus)
    mine = Job(7, 7, snapshot.user, "python x.py", 0, locations)
    views = device_views([Device(0, "f")], 0, {}, replace(snapshot, jobs=(mine,)))
    rows = render_gpus(views[0]).splitlines()[3:5]
    assert "lost" not in rows[0] and rows[0].count(" %") == 3
    assert rows[1].split("|")[3:8] == [
        "    lost    ",
        "    lost    ",
        "    lost    ",
        "    lost    ",
        "     lost    ",
    ]
    assert views[0].utilization == snapshot.nodes[0].gpus[0].util  # the lost GPU is left out


def test_one_shot_commands_shut_nvml_down(monkeypatch, config_dir, capsys):
    fake = FakeNvml().install(monkeypatch)
    assert main(["smi", "--backend", "nvml"]) == 0
    banner = capsys.readouterr().out.splitlines()[1]
    # The driver's version, called that; no "Latest Version" nothing measured.
    assert banner.endswith("  NVIDIA driver 580.159.04  |") and "Latest" not in banner
    assert main(["switch", "-M", "1", "--backend", "nvml"]) == 0
    assert "H200" in capsys.readouterr().out
    assert fake.calls["init"] == 2 and fake.calls["shutdown"] == 2


def test_driver_gone_is_one_clear_line(monkeypatch, config_dir, capsys):
    FakeNvml(driver_gone=True).install(monkeypatch)
    with pytest.raises(BackendError, match="NVIDIA driver not loaded"):
        NvmlBackend()
    assert main(["smi", "--backend", "nvml"]) == 1
    err = capsys.readouterr().err
    assert err == "moai-tui: nvml backend: NVIDIA driver not loaded\n"


def test_auto_falls_back_to_simulator_and_says_so(monkeypatch, config_dir):
    FakeNvml(driver_gone=True).install(monkeypatch)
    monkeypatch.setattr("moai_tui.backends.shutil.which", lambda name: None)  # no Slurm either
    from moai_tui.backends import open_backend
    from moai_tui.config import Config

    backend = open_backend("auto", Config())
    assert backend.name == "simulator"
    # amdsmi is tried next; what it says depends on this machine (tests/test_amdsmi.py)
    assert backend.notice.startswith("nvml backend: NVIDIA driver not loaded; amdsmi backend: ")
    assert backend.notice.endswith(": showing the simulated MoAI cluster")


@pytest.mark.skipif(DRIVER, reason="an NVIDIA driver is here: this is for machines without one")
def test_no_library_at_all_on_this_machine(config_dir):
    """CI has no NVIDIA driver: the real pynvml fails to load, and the user is told so."""
    result = run_cli("smi", "--backend", "nvml")
    assert result.returncode == 1
    assert result.stderr == (
        "moai-tui: nvml backend: NVML library not found (no NVIDIA driver installed)\n"
    )
    assert run_cli("smi").returncode == 0  # auto: the simulator


def test_no_permission_on_processes(monkeypatch, config_dir, capsys):
    """NVML may not list other users' processes: none are shown, the GPUs' readings still are,
    and the user's own job stays, its memory null (unknown) rather than 0."""
    FakeNvml(gpus=2, processes_denied=True).install(monkeypatch)
    snapshot = NvmlBackend().sample()
    assert snapshot.jobs == () and all(g.util is not None for g in snapshot.nodes[0].gpus)
    run_job_on_gpus(config_dir, 2)
    doc = json.loads(smi(capsys, "--json"))
    (job,) = doc["cluster"]["jobs"]
    assert job["pid"] == os.getpid() and job["mem_used_mib"] is None and job["util"] is None
    assert [p["pid"] for p in doc["processes"]] == [os.getpid()]
    assert doc["devices"][0]["utilization"] is not None


def test_process_list_on_slow_cadence_only(monkeypatch):
    fake = FakeNvml(gpus=2).install(monkeypatch)
    now = [1000.0]
    backend = NvmlBackend(clock=lambda: now[0], process_interval=3.0)
    for _ in range(8):  # 8 ticks at 4 Hz = 2 s
        backend.sample()
        now[0] += 0.25
    assert fake.calls["util"] == 16 and fake.calls["procs"] == 2  # once, for 2 GPUs
    assert fake.calls["proc_util"] == 2  # 1.5-2.5 ms a call: never on the tick
    now[0] += 1.0
    backend.sample()
    assert fake.calls["procs"] == 4


def test_idle_gpu_is_not_asked_for_process_utilization(monkeypatch):
    # Frame 0 of the recording: no process on GPU 0 yet; GPU 1 (frame 40) runs the job.
    fake = FakeNvml(gpus=2, frame=0).install(monkeypatch)
    snapshot = NvmlBackend().sample()
    assert fake.calls["procs"] == 2 and fake.calls["proc_util"] == 1
    measured = [job.gpus for job in snapshot.jobs if job.util is not None]
    assert measured and all(gpus == (f"{snapshot.host}:1",) for gpus in measured)


def test_local_catalog_and_bigger_flavors_refused(monkeypatch, config_dir, capsys):
    FakeNvml(gpus=4).install(monkeypatch)
    catalog = NvmlBackend().local_catalog()
    assert [(f.name, f.gpus) for f in catalog.flavors] == [
        ("1xH200.140GB", 1),
        ("2xH200.280GB", 2),
        ("4xH200.561GB", 4),
    ]
    assert main(["switch", "--backend", "nvml", "-M", "2xH200.280GB"]) == 0
    # The MoAI catalog on this 4-GPU machine: larger flavors are not available here.
    assert main(["switch", "--backend", "nvml", "--catalog", _moai_catalog(), "-M", "8"]) == 1
    assert "4xLarge.2048GB is not available here: it needs 32 GPUs, this machine has 4" in (
        capsys.readouterr().err
    )


def _moai_catalog() -> str:
    import moai_tui.catalog

    return str(Path(moai_tui.catalog.__file__).parent / "catalogs" / "moai.toml")


def test_unknown_error_once_is_not_a_lost_gpu(monkeypatch):
    """NVML_ERROR_UNKNOWN can be a hiccup: a GPU is lost only after UNKNOWN_LIMIT ticks of it in
    a row (GpuIsLost marks it at once, see above)."""
    from moai_tui.backends.nvml import UNKNOWN_LIMIT

    fake = FakeNvml(gpus=2).install(monkeypatch)
    backend = NvmlBackend()
    fake.failing[0] = "NVMLError_Unknown"
    hiccup = backend.sample().nodes[0].gpus
    assert not hiccup[0].lost and hiccup[0].util is None and hiccup[1].util is not None
    fake.failing.clear()
    recovered = backend.sample().nodes[0].gpus[0]
    assert not recovered.lost and recovered.util is not None
    fake.failing[0] = "NVMLError_Unknown"
    streak = [backend.sample().nodes[0].gpus[0].lost for _ in range(UNKNOWN_LIMIT)]
    assert streak == [False] * (UNKNOWN_LIMIT - 1) + [True]
    fake.failing.clear()
    assert backend.sample().nodes[0].gpus[0].lost  # gone for good once judged lost


def test_gpus_carry_their_nvml_uuid(monkeypatch):
    FakeNvml(gpus=2).install(monkeypatch)
    gpus = NvmlBackend().sample().nodes[0].gpus
    recorded = "GPU-111a1675-4d51-786b-b21a-081019e305"
    assert [g.uuid for g in gpus] == [recorded + "00", recorded + "01"]
