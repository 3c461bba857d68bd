"""`moai-tui exporter`: /metrics only, cleaned readings, the GPU's own UUID, who holds a GPU."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from conftest import moai_exe, run_cli
from fake_nvml import FakeNvml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from moai_tui.backends.nvml import NvmlBackend
from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.context import Context
from moai_tui.exporter import SnapshotCollector
from moai_tui.model import Gpu, Job, Node
from moai_tui.pipeline import take_sample


class Serving(SimulatorBackend):
    """The simulator's interface, answering with the snapshot the test sets."""

    def __init__(self):
        super().__init__(nodes=1, clock=lambda: 1780000000.0, user="me")
        self.snapshot = super().sample()

    def sample(self, requests=()):
        return self.snapshot


def served(snapshot, node: str | None = None) -> dict[str, list]:
    """What a scrape returns: metric name -> its samples, parsed back from the text."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snapshot, node))
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


@pytest.fixture
def exporter(config_dir):
    """A real exporter on a port the kernel picks, its URL read from what it announces."""
    process = subprocess.Popen(
        [moai_exe(), "exporter", "--backend", "simulator", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving all nodes"), line
        yield line.split(" on ")[1].strip().removesuffix("/metrics")
    finally:
        process.terminate()
        process.wait(10)


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_only_metrics_is_served(exporter):
    assert status_of(f"{exporter}/metrics") == 200
    for path in ("/", "/foo", "/metrics/", "/metricsx", "/favicon.ico"):
        assert status_of(f"{exporter}{path}") == 404, path


def test_impossible_readings_are_left_out_on_the_shipped_path(config_dir):
    """As cmd_exporter serves (take_sample, then the collector): a NaN, a negative or an
    absurd reading is not published, and the plausible ones beside it are."""
    gpus = (
        Gpu("n1", 0, "m", util=float("nan"), temp_c=40.0),
        Gpu("n1", 1, "m", util=-5.0, temp_c=1e9, power_w=300.0),
        Gpu("n1", 2, "m", util=55.0, mem_used_mib=900, mem_total_mib=100),
    )
    ctx = Context(backend_spec="simulator")
    ctx.backend = backend = Serving()
    backend.snapshot = replace(backend.snapshot, nodes=(Node("n1", gpus),), jobs=())
    metrics = served(take_sample(ctx).snapshot)

    def values(name: str) -> dict[str, float]:
        return {s.labels["gpu"]: s.value for s in metrics.get(name, [])}

    assert values("DCGM_FI_DEV_GPU_UTIL") == {"2": 55.0}
    assert values("DCGM_FI_DEV_GPU_TEMP") == {"0": 40.0}
    assert values("DCGM_FI_DEV_POWER_USAGE") == {"1": 300.0}
    assert values("DCGM_FI_DEV_FB_USED") == {} and values("DCGM_FI_DEV_FB_FREE") == {}


def test_real_uuid_and_driver_from_nvml(monkeypatch):
    FakeNvml(gpus=2).install(monkeypatch)
    snapshot = NvmlBackend().sample()
    samples = served(snapshot)["DCGM_FI_DEV_GPU_UTIL"]
    uuids = {s.labels["gpu"]: s.labels["UUID"] for s in samples}
    assert uuids == {str(g.index): g.uuid for g in snapshot.nodes[0].gpus}
    assert all(u.startswith("GPU-111a1675-") for u in uuids.values())
    assert {s.labels["DCGM_FI_DRIVER_VERSION"] for s in samples} == {"580.159.04"}


def test_simulated_gpus_have_no_invented_uuid_or_driver():
    snapshot = SimulatorBackend(nodes=1, clock=lambda: 1780000000.0, user="me").sample()
    for sample in served(snapshot)["DCGM_FI_DEV_GPU_UTIL"]:
        # Empty (which Prometheus stores as no label): nothing poses as a UUID or a driver.
        assert sample.labels["UUID"] == sample.labels["DCGM_FI_DRIVER_VERSION"] == ""


def test_who_holds_each_gpu_is_labelled(config_dir):
    base = SimulatorBackend(nodes=1, clock=lambda: 1780000000.0, user="me").sample()
    node = Node("n1", tuple(Gpu("n1", i, "m", util=10.0 * i) for i in range(4)))
    jobs = (
        Job(7, 70, "alice", "train", 0, ("n1:0", "n1:1")),
        Job(8, 80, "bob", "eval", None, ("n1:1",)),  # shares GPU 1 with alice's job
        Job(9, 90, "carol", "wait", None, (), waiting=True),
    )
    samples = served(replace(base, nodes=(node,), jobs=jobs))["DCGM_FI_DEV_GPU_UTIL"]
    by_gpu = {s.labels["gpu"]: s.labels for s in samples}
    assert len(samples) == 4  # one series per GPU, shared or not: sums count it once
    assert (by_gpu["0"]["hpc_job"], by_gpu["0"]["hpc_user"]) == ("7", "alice")
    assert (by_gpu["1"]["hpc_job"], by_gpu["1"]["hpc_user"]) == ("7,8", "alice,bob")
    assert by_gpu["2"]["hpc_job"] == by_gpu["3"]["hpc_user"] == ""  # idle: no holder


def test_a_users_simulated_job_reaches_the_exposition(exporter):
    started = run_cli("sim", "start", "python train.py")
    assert started.returncode == 0
    job_id = started.stdout.split()[1]  # "Job 123456 (PID ...) submitted ..."
    with urllib.request.urlopen(f"{exporter}/metrics", timeout=10) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    held = [s.labels for s in families["DCGM_FI_DEV_GPU_UTIL"].samples if s.labels["hpc_job"]]
    mine = [labels for labels in held if labels["hpc_job"] == job_id]
    assert len(mine) == 8  # xLarge.512GB: the user's 8 GPUs, under the user's name
    assert len({labels["hpc_user"] for labels in held}) > 1  # and the cluster's other users
