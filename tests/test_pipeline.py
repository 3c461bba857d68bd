"""One pipeline (state -> sample -> clean -> views) behind smi, device --list, the dashboard and
the exporter; one backend call at a time; the state file seen changing whenever it changes."""

from __future__ import annotations

import getpass
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import as_summary, run_cli
from fake_nvml import FakeNvml

from moai_tui import actions
from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.context import Context
from moai_tui.exporter import SnapshotCollector
from moai_tui.model import ClusterSnapshot, Job, JobRequest, Node
from moai_tui.pipeline import take_sample
from moai_tui.sampling import HostProbe, Sampler
from moai_tui.state import Device, State, StateStore, dump_state
from moai_tui.text.smi import render_processes, smi_document

HERE = Path(__file__).parent


def write_state(config_dir: Path, state: State) -> None:
    StateStore(config_dir).update(lambda _: state)


def test_dashboard_honours_moreh_visible_device(config_dir, monkeypatch):
    write_state(config_dir, State((Device(0, "Small.64GB"), Device(1, "Large.256GB")), 0))
    monkeypatch.setenv("MOREH_VISIBLE_DEVICE", "1")
    sample = Sampler(Context(backend_spec="simulator"), None).take().sample
    assert sample.current == 1
    assert [v.device for v in sample.views if v.current] == [1]
    star = [line for line in run_cli("smi").stdout.splitlines() if "*" in line]
    assert len(star) == 1 and "Large.256GB" in star[0]  # smi says the same


def test_dashboard_shows_a_pinned_snapshot_as_smi_does(config_dir, tmp_path, monkeypatch):
    run_cli("device", "--add", "Large.256GB")
    run_cli("device", "--switch", "1")
    run_cli("sim", "start", "python train.py")
    saved = tmp_path / "saved.json"
    saved.write_text(run_cli("smi", "--json").stdout)
    (config_dir / "state.toml").unlink()  # the live state now differs: one device, idle
    ctx = Context(backend_spec=f"snapshot:{saved}")
    sample = Sampler(ctx, None).take().sample
    pinned = json.loads(saved.read_text())
    assert sample.current == pinned["current_device"] == 1
    assert [(v.device, v.flavor_name) for v in sample.views] == [
        (d["id"], d["flavor"]) for d in pinned["devices"]
    ]
    assert sample.current_view().job.command == "python train.py"
    assert smi_document(sample.views, sample.snapshot, sample.current) == pinned


def test_device_list_prunes_dead_jobs_like_smi(config_dir, tmp_path):
    """A `run` job whose process is gone shows nowhere: device --list prints exactly the
    device table smi prints."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    user = getpass.getuser()
    job = JobRequest(123456, dead.pid, 0, "python gone.py", 1, 1, time.time(), user, "run")
    state = State((Device(0, "1xH200.140GB"),), 0, (replace(job, assigned=(f"{host}:0",)),))
    config_dir.mkdir(parents=True)
    (config_dir / "state.toml").write_text(dump_state(state))

    def fake(*args):
        return subprocess.run(
            [sys.executable, str(HERE / "fake_nvml_main.py"), "1", "--", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    listing, smi = fake("device", "--list"), fake("smi")
    assert listing.returncode == 0 and smi.returncode == 0, listing.stderr + smi.stderr
    assert "Processes:" not in smi.stdout
    assert listing.stdout == smi.stdout
    star = [line for line in listing.stdout.splitlines() if "*" in line][0]
    assert star.count(" - ") >= 3  # no memory, total or utilization: nothing holds its GPUs


def test_a_jobs_memory_is_its_own_everywhere(config_dir, monkeypatch):
    """NVML sees the job and a 2 GiB holder on the same GPU: smi's Processes, --json and the
    dashboard all show the job's own memory, not the GPU's total."""
    fake = FakeNvml(gpus=1, job_pid=os.getpid()).install(monkeypatch)
    recorded = fake.line(0)["mem_v2"]["ok"]["used"]  # what NVML's process list reports
    host = socket.gethostname()
    job = JobRequest(
        654321,
        os.getpid(),
        0,
        "python mine.py",
        1,
        1,
        time.time(),
        getpass.getuser(),
        "run",
        (f"{host}:0",),
    )
    write_state(config_dir, State((Device(0, "1xH200.140GB"),), 0, (job,)))
    ctx = Context(backend_spec="nvml")
    sample = Sampler(ctx, None).take().sample
    view = sample.current_view()
    own = view.job.mem_used_mib
    gpu = view.gpus[0]
    assert own == (recorded - 2 * 1024**3) // 1024**2  # the 2 GiB holder's memory excluded
    assert own < gpu.mem_used_mib
    assert view.memory_used_mib == gpu.mem_used_mib  # the device row: everything on its GPUs
    document = smi_document(sample.views, sample.snapshot, sample.current)
    assert document["processes"][0]["memory_used_mib"] == own
    assert f"|  {own} MiB" in "\n".join(render_processes(sample.views))
    ctx.close()


def test_exporter_publishes_cleaned_values(config_dir, tmp_path):
    """An impossible reading is left out of the exporter's metrics, as smi shows it '-'."""
    run_cli("sim", "start", "python train.py")
    saved = json.loads(run_cli("smi", "--json").stdout)
    gpu = saved["cluster"]["nodes"][0]["gpus"][0]
    gpu["temp_c"] = -500.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(saved))
    with socket.socket() as probe:  # a free port, chosen now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = subprocess.Popen(
        [
            "moai-tui",
            "exporter",
            "--backend",
            f"snapshot:{path}",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "/metrics" in exporter.stdout.readline()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        temps = [
            line for line in body.decode().splitlines() if line.startswith("DCGM_FI_DEV_GPU_TEMP{")
        ]
        node = saved["cluster"]["nodes"][0]["name"]
        assert temps and not [t for t in temps if f'Hostname="{node}"' in t and 'gpu="0"' in t]
        assert not [t for t in temps if t.endswith(" -500.0")]
    finally:
        exporter.terminate()
        exporter.wait(10)


class OverlapDetector(SimulatorBackend):
    """The simulator, slowed down, counting how many calls are inside it at once."""

    def __init__(self):
        super().__init__(clock=lambda: 1_780_000_000.0, user="me")
        self.inside = 0
        self.most = 0
        self.calls = 0
        self.guard = threading.Lock()

    def _enter(self):
        with self.guard:
            self.inside += 1
            self.calls += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.02)

    def _leave(self):
        with self.guard:
            self.inside -= 1

    def sample(self, requests=()):
        self._enter()
        try:
            return super().sample(requests)
        finally:
            self._leave()

    def history(self, nodes, seconds, step):
        self._enter()
        try:
            return [(1.0, 2.0)]
        finally:
            self._leave()


def test_backend_calls_never_overlap(config_dir):
    """Poller, first sample (with history), dashboard actions and scrapes from many threads:
    one backend call at a time."""
    ctx = Context(backend_spec="simulator")
    ctx.backend = OverlapDetector()
    sampler = Sampler(ctx, None)
    work = [
        lambda: sampler.take(),
        lambda: sampler.take_first(60.0, 1.0),
        lambda: actions.switch_flavor(ctx, "Small.64GB"),
        lambda: take_sample(ctx),
    ]
    threads = [threading.Thread(target=work[i % len(work)]) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert ctx.backend.calls >= 12 and ctx.backend.most == 1


def test_concurrent_exporter_scrapes_take_turns(config_dir):
    """prometheus_client serves each scrape on its own thread: they must not share the
    backend's connection at the same time."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    ctx = Context(backend_spec="simulator")
    ctx.backend = OverlapDetector()
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: take_sample(ctx).snapshot, "node00"))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        bodies: list[bytes] = []
        scrapes = [
            threading.Thread(
                target=lambda: bodies.append(urllib.request.urlopen(url, timeout=30).read())
            )
            for _ in range(8)
        ]
        for scrape in scrapes:
            scrape.start()
        for scrape in scrapes:
            scrape.join(60)
        assert len(bodies) == 8 and all(b"DCGM_FI_DEV_GPU_UTIL" in b for b in bodies)
        assert ctx.backend.most == 1
    finally:
        server.shutdown()
        thread.join(10)


def test_backend_opened_once_from_two_threads(config_dir, monkeypatch):
    """Python 3.12 dropped cached_property's lock: two threads asking for the backend at once
    must still open one (one nvmlInit, one socket)."""
    opened = []

    def slow_open(spec, config, url=None):
        time.sleep(0.2)
        backend = SimulatorBackend()
        opened.append(backend)
        return backend

    monkeypatch.setattr("moai_tui.backends.open_backend", slow_open)
    ctx = Context(backend_spec="simulator")
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(ctx.backend)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(opened) == 1 and all(b is opened[0] for b in seen) and len(seen) == 4


def test_state_change_within_one_timestamp_tick_is_seen(config_dir):
    """Two writes with the same mtime (a coarse filesystem clock) and the same size: the
    dashboard still sees the second, because every write is a new inode."""
    write_state(config_dir, State((Device(0, "Small.64GB"),), 0))
    path = config_dir / "state.toml"
    stamp = path.stat().st_mtime_ns
    sampler = Sampler(Context(backend_spec="simulator"), None)
    assert sampler.take().sample.views[0].flavor_name == "Small.64GB"
    write_state(config_dir, State((Device(0, "Large.256GB"),), 0))  # the same length
    os.utime(path, ns=(stamp, stamp))
    assert sampler.take().sample.views[0].flavor_name == "Large.256GB"


def test_directory_synced_after_the_rename(config_dir, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_state(config_dir, State((Device(0, "Small.64GB"),), 0))
    assert synced == ["file", "dir"]


def test_host_probe_forgets_pids_that_left(config_dir):
    """On a busy shared node thousands of processes come and go: the probe keeps only those
    in the current snapshot."""
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pids = [os.getpid(), gone.pid]

        class Local:
            name, notice, visible_devices_env = "local", None, None
            jobs: tuple = ()

            def sample(self, requests=()):
                return ClusterSnapshot(
                    0.0,
                    "local",
                    "me",
                    (Node("h", ()),),
                    tuple(Job(p, p, "me", "x") for p in self.jobs),
                    local=True,
                )

            def local_catalog(self):
                return None

            def history(self, nodes, seconds, step):
                return None

            def pinned_state(self):
                return None

            def replay_status(self):
                return None

            def close(self):
                pass

        ctx = Context(backend_spec="simulator")
        ctx.backend = backend = Local()
        probe = HostProbe()
        sampler = Sampler(ctx, probe)
        backend.jobs = tuple(pids)
        assert set(sampler.take().sample.processes) == set(pids)
        backend.jobs = (os.getpid(),)
        assert set(sampler.take().sample.processes) == {os.getpid()}
        assert set(probe.processes) == {os.getpid()}
    finally:
        gone.kill()
        gone.wait()


def test_first_sample_future_always_resolves(config_dir):
    """An exception escaping the first sample reaches whoever waits, as an error to show."""
    ctx = Context(backend_spec="simulator")
    ctx.backend = OverlapDetector()
    sampler = Sampler(ctx, None)
    sampler.take_first = lambda *_: (_ for _ in ()).throw(RuntimeError("boom"))
    outcome = sampler.first(60.0, 1.0).result(timeout=10)
    assert outcome.sample is None and outcome.error == "RuntimeError: boom"


@pytest.mark.parametrize("args", [["smi"], ["smi", "-p"], ["device", "--list"], ["smi", "--json"]])
def test_cli_consumers_use_the_pipeline(config_dir, args):
    """One path: a bad MOREH_VISIBLE_DEVICE is the same line from every consumer."""
    result = run_cli(*args, env={"MOREH_VISIBLE_DEVICE": "3"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "MOREH_VISIBLE_DEVICE='3' is not one of your devices" in result.stderr


class Summarising(SimulatorBackend):
    """An attached backend (a device views the cluster's first nodes, as on Prometheus) that
    lists GPU by GPU only the nodes it was told to, and summarises the others."""

    def __init__(self, **kwargs):
        super().__init__(clock=lambda: 1_780_000_000.0, user="me", **kwargs)
        self.told: list[frozenset[str] | None] = []
        self.detail: frozenset[str] | None = None
        self.samples = 0
        self.hold = threading.Event()
        self.inside = threading.Event()

    def set_detail(self, nodes, readings=None):
        self.detail = None if nodes is None else frozenset(nodes)
        self.told.append(self.detail)

    def sample(self, requests=()):
        self.samples += 1
        self.inside.set()
        self.hold.wait(30)
        snapshot = super().sample(requests)
        nodes = tuple(
            n if self.detail is None or n.name in self.detail else as_summary(n)
            for n in snapshot.nodes
        )
        return replace(snapshot, nodes=nodes, attached=True)


def test_the_devices_nodes_are_listed_gpu_by_gpu_whatever_the_caller_shows(config_dir):
    """The dashboard shows node05 GPU by GPU; the device (2 nodes) views node00-01: those are
    fetched GPU by GPU too, so its memory and utilization never come from a summary. The first
    sample does not know them yet: it asks again at once, and only once."""
    write_state(config_dir, State((Device(0, "2xLarge.1024GB"),), 0))
    ctx = Context(backend_spec="simulator")
    ctx.backend = backend = Summarising()
    backend.hold.set()
    ctx.set_detail({"node05"})
    sample = take_sample(ctx)
    (view,) = sample.views
    assert backend.told == [{"node05"}, {"node05", "node00", "node01"}] and backend.samples == 2
    assert len(view.gpus) == 16 and view.memory_used_mib == sum(g.mem_used_mib for g in view.gpus)
    summarised = {n.name for n in sample.snapshot.nodes if n.summary is not None}
    assert "node02" in summarised and not summarised & {"node00", "node01", "node05"}
    take_sample(ctx)  # the device's nodes are known now: one sample, nothing new to tell
    assert backend.samples == 3 and len(backend.told) == 2
    ctx.set_detail(None)  # smi, the exporter: every node
    assert all(n.summary is None for n in take_sample(ctx).snapshot.nodes)
    assert backend.told[-1] is None


def test_saying_what_is_shown_never_waits_for_a_sample_in_flight(config_dir):
    ctx = Context(backend_spec="simulator")
    ctx.backend = backend = Summarising()
    worker = threading.Thread(target=take_sample, args=(ctx,))
    worker.start()
    try:
        assert backend.inside.wait(10), "the sample never started"
        done = threading.Thread(target=ctx.set_detail, args=({"node01"},))
        done.start()
        done.join(5)
        assert not done.is_alive(), "set_detail waited for the backend"
    finally:
        backend.hold.set()
        worker.join(30)
    take_sample(ctx)
    assert backend.told[-1] == {"node01", "node00"}  # the device's node besides the caller's
