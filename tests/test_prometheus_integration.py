"""With a real Prometheus server (Debian's package, installed by .ci/run) scraping several
`moai-tui exporter` processes, each one node of the simulated cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FROZEN, as_summary, moai_exe

from moai_tui.backends.prometheus import PrometheusBackend, refresh_queries
from moai_tui.context import Context
from moai_tui.overview import summarise
from moai_tui.pipeline import take_sample
from moai_tui.tui.app import MoaiApp
from moai_tui.validate import clean_snapshot

PROMETHEUS = shutil.which("prometheus")
assert PROMETHEUS, "prometheus is required (installed by .ci/run)"
NODES = ["node00", "node01", "node02", "node03"]
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """Exporters for `nodes` and a Prometheus scraping them every second, all on loopback;
    `relabel` are metric_relabel_configs for the scrape (to rename nodes, for one)."""

    def __init__(self, workdir: Path, nodes: list[str] = NODES, relabel: list[dict] = ()):
        self.workdir = workdir
        self.env = {
            **os.environ,
            "MOAI_TUI_CONFIG_DIR": str(workdir / "config"),
            "MOAI_TUI_SIM_TIME": FROZEN,
        }
        self.ports = {node: free_port() for node in nodes}
        self.exporters = {node: self.start_exporter(node) for node in nodes}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage = tempfile.mkdtemp(dir=workdir)
        scrape = {
            "job_name": "moai",
            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in self.ports.values()]}],
            "metric_relabel_configs": list(relabel),
        }
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [scrape],
        }
        (workdir / "prom.yml").write_text(json.dumps(config))  # JSON is YAML
        self.prometheus = None
        self.start_prometheus()

    def start_exporter(self, node: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                moai_exe(),
                "exporter",
                "--backend",
                "simulator",
                "--node",
                node,
                "--listen",
                f"127.0.0.1:{self.ports[node]}",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
        )

    def start_prometheus(self) -> None:
        self.prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self.workdir / 'prom.yml'}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def query(self, promql: str) -> list:
        url = f"{self.url}/api/v1/query?query={urllib.parse.quote(promql)}"
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.load(r)["data"]["result"]

    def wait_until_up(self, count: int, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                up = [s for s in self.query("up") if s["value"][1] == "1"]
                gpus = self.query("DCGM_FI_DEV_GPU_UTIL")
                if len(up) == count and len(gpus) == 8 * count:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"Prometheus never saw {count} exporters up")

    def stop(self) -> None:
        for process in [*self.exporters.values(), self.prometheus]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        running.wait_until_up(len(NODES))
        yield running
    finally:
        running.stop()


# Node names that are PromQL or regex syntax: `.` matches the lookalike as a regex, the quote
# and backslash end or escape a string literal.
ODD_NAMES = {"node00": "gpu.00", "node01": "gpuX00", "node02": 'q"uote\\'}


@pytest.fixture(scope="module")
def odd_cluster(tmp_path_factory):
    relabel = [
        {
            "source_labels": ["Hostname"],
            "regex": old,
            "target_label": "Hostname",
            "replacement": new,
        }
        for old, new in ODD_NAMES.items()
    ]
    running = Cluster(tmp_path_factory.mktemp("odd"), list(ODD_NAMES), relabel)
    try:
        running.wait_until_up(len(ODD_NAMES))
        yield running
    finally:
        running.stop()


def cli(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [moai_exe(), *args], capture_output=True, text=True, env=cluster.env, timeout=60
    )


def test_smi_shows_the_simulators_totals(cluster):
    assert cli(cluster, "switch", "-M", "4xLarge.2048GB").returncode == 0
    via = json.loads(
        cli(
            cluster, "smi", "--json", "--backend", "prometheus", "--prometheus-url", cluster.url
        ).stdout
    )
    truth = json.loads(cli(cluster, "smi", "--json", "--backend", "simulator").stdout)
    gpus = [g for n in truth["cluster"]["nodes"] if n["name"] in NODES for g in n["gpus"]]
    device = via["devices"][0]
    assert device["flavor"] == "4xLarge.2048GB"
    assert device["memory_used_mib"] == sum(g["mem_used_mib"] for g in gpus)
    assert device["memory_total_mib"] == sum(g["mem_total_mib"] for g in gpus)
    assert device["utilization"] == pytest.approx(
        sum(g["util"] for g in gpus) / len(gpus), abs=0.06
    )
    assert [n["name"] for n in via["cluster"]["nodes"]] == NODES
    awk = subprocess.run(
        ["awk", "-F", "|", '/\\*/ {gsub(/[^0-9]/,"",$5); print $5}'],
        input=cli(
            cluster, "smi", "--backend", "prometheus", "--prometheus-url", cluster.url
        ).stdout,
        capture_output=True,
        text=True,
    )
    assert awk.stdout.strip() == str(device["memory_used_mib"])


def test_refresh_is_up_and_the_per_gpu_queries(cluster):
    """A cluster fetched whole: 3 queries (performance.md's budget), `up` asked within the
    first (the tests below kill exporters: their nodes show down)."""
    backend = PrometheusBackend.from_config(cluster.url)
    backend.sample()
    before = backend.client.queries
    snapshot = backend.sample()
    assert backend.client.queries - before == len(refresh_queries()) == 3
    assert sum(len(n.gpus) for n in snapshot.nodes) == 32


async def _until(pilot, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    assert predicate(), "condition not reached in time"


def dashboard(cluster) -> MoaiApp:
    os.environ["MOAI_TUI_CONFIG_DIR"] = cluster.env["MOAI_TUI_CONFIG_DIR"]
    return MoaiApp(Context(backend_spec="prometheus", prometheus_url=cluster.url), 0.5)


async def test_killed_exporter_shows_its_node_down(cluster, monkeypatch):
    monkeypatch.setenv("MOAI_TUI_CONFIG_DIR", cluster.env["MOAI_TUI_CONFIG_DIR"])
    app = dashboard(cluster)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None, 10)
        assert all(n.up for n in app.sample.snapshot.nodes)
        cluster.exporters["node02"].kill()
        cluster.exporters["node02"].wait()

        def node02_down() -> bool:
            nodes = {n.name: n for n in app.sample.snapshot.nodes}
            return "node02" in nodes and not nodes["node02"].up

        await _until(pilot, node02_down, 20)
        await _until(pilot, lambda: "1 down" in app.cluster.plain, 5)
        assert "✕" * 8 in app.grid.plain  # its eight GPUs, marked lost in the grid
        cluster.exporters["node02"] = cluster.start_exporter("node02")
        await _until(pilot, lambda: all(n.up for n in app.sample.snapshot.nodes), 30)


async def test_prometheus_stopped_then_restarted(cluster, monkeypatch):
    monkeypatch.setenv("MOAI_TUI_CONFIG_DIR", cluster.env["MOAI_TUI_CONFIG_DIR"])
    app = dashboard(cluster)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None, 10)
        good = app.sample
        cluster.prometheus.send_signal(signal.SIGTERM)
        cluster.prometheus.wait(10)
        try:
            await _until(pilot, lambda: "STALE" in app.header.plain, 10)
            assert "connection refused" in str(app.query_one("#notice").content)
            assert app.sample is good and app.is_running  # last data kept, no crash
        finally:  # the other tests of the module need it back
            cluster.start_prometheus()
        await _until(pilot, lambda: "STALE" not in app.header.plain, 45)
        assert app.sample is not good


def test_dashboard_opens_with_history_from_query_range(cluster, monkeypatch):
    monkeypatch.setenv("MOAI_TUI_CONFIG_DIR", cluster.env["MOAI_TUI_CONFIG_DIR"])
    ctx = Context(backend_spec="prometheus", prometheus_url=cluster.url)
    from moai_tui.sampling import Sampler

    outcome = Sampler(ctx, None).take_first(history_s=60.0, step=1.0)
    assert outcome.sample is not None and len(outcome.history) >= 5
    util = [u for u, _ in outcome.history if u is not None]
    truth = outcome.sample.views[0].utilization
    assert util and util[-1] == pytest.approx(truth, abs=0.1)  # frozen clock: flat history


def test_history_with_node_names_that_are_promql_syntax(odd_cluster):
    """A device on gpu.00:0-2 and the quoted node's GPU 0: its history is those four GPUs, as
    the live view computes it, not gpuX00's too (a regex `.`) and not a query error."""
    backend = PrometheusBackend.from_config(odd_cluster.url)
    nodes = {n.name: n for n in backend.sample().nodes}
    assert set(nodes) == set(ODD_NAMES.values())
    device = [*nodes["gpu.00"].gpus[:3], nodes[ODD_NAMES["node02"]].gpus[0]]
    truth_util = sum(g.util for g in device) / len(device)
    truth_mem = 100 * sum(g.mem_used_mib for g in device) / sum(g.mem_total_mib for g in device)
    widened = [*device, *nodes["gpuX00"].gpus]
    assert sum(g.util for g in widened) / len(widened) != pytest.approx(truth_util, abs=0.1)
    deadline = time.monotonic() + 20
    while len(points := backend.history(device, 20.0, 1.0)) < 4:  # some seconds of data
        assert time.monotonic() < deadline, f"Prometheus kept no history: {points}"
        time.sleep(0.25)
    # Frozen simulator clock: flat, once every exporter was scraped (not at the very start).
    for util, memory in points[-2:]:
        assert util == pytest.approx(truth_util, abs=0.01), points
        assert memory == pytest.approx(truth_mem, abs=0.01), points


def test_one_shot_smi_shows_a_dead_exporters_node_down(cluster):
    """`smi` never saw node03 alive, yet shows it down with its 8 GPUs, as the dashboard does,
    instead of a 3-node accelerator with no word."""
    assert cli(cluster, "switch", "-M", "4xLarge.2048GB").returncode == 0
    cluster.exporters["node03"].kill()
    cluster.exporters["node03"].wait()
    try:
        deadline = time.monotonic() + 20
        while not [s for s in cluster.query("up == 0")]:
            assert time.monotonic() < deadline, "Prometheus never saw the exporter down"
            time.sleep(0.25)
        prometheus = ("--backend", "prometheus", "--prometheus-url", cluster.url)
        doc = json.loads(cli(cluster, "smi", "--json", *prometheus).stdout)
        nodes = {n["name"]: n for n in doc["cluster"]["nodes"]}
        assert list(nodes) == NODES and not nodes["node03"]["up"]
        assert len(nodes["node03"]["gpus"]) == 8
        assert all(g["lost"] for g in nodes["node03"]["gpus"])
        per_gpu = cli(cluster, "smi", "-p", *prometheus).stdout
        assert per_gpu.count("node03:") == 8 and per_gpu.count("lost") == 8 * 5
    finally:
        cluster.exporters["node03"] = cluster.start_exporter("node03")
        cluster.wait_until_up(len(NODES))


class AmdCluster(Cluster):
    """Two AMD-named exporters: the amdsmi backend over the fake MI250 node
    (tests/fake_amdsmi.py), and the simulator's node01 under AMD names with every name given
    the prefix some deployments configure ("amd_", added here by relabelling)."""

    def start_exporter(self, node: str) -> subprocess.Popen:
        listen = f"127.0.0.1:{self.ports[node]}"
        if node == "fake-mi250":
            command = [sys.executable, str(HERE / "fake_amdsmi_main.py"), "--", "exporter"]
            command += ["--backend", "amdsmi", "--listen", listen]
        else:
            command = [moai_exe(), "exporter", "--backend", "simulator", "--names", "amd"]
            command += ["--node", node, "--listen", listen]
        return subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL)

    def wait_for_gpus(self, count: int, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self.query('{__name__=~".*gpu_gfx_activity"}')) == count:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"Prometheus never saw {count} AMD GPUs")


def test_amd_exporters_through_a_real_prometheus(tmp_path):
    prefix = [
        {
            "source_labels": ["hostname", "__name__"],
            "separator": ";",
            "regex": "node01;(gpu_.*)",
            "target_label": "__name__",
            "replacement": "amd_$1",
        }
    ]
    running = AmdCluster(tmp_path, ["fake-mi250", "node01"], prefix)
    try:
        running.wait_for_gpus(16)
        assert running.query("amd_gpu_gfx_activity") and not running.query(
            'gpu_gfx_activity{hostname="node01"}'
        )
        snapshot = PrometheusBackend.from_config(running.url).sample()
        nodes = {node.name: node for node in snapshot.nodes}
        (local,) = set(nodes) - {"node01"}
        mi250 = nodes[local].gpus
        assert len(mi250) == 8 and {g.model for g in mi250} == {"AMD Instinct MI250X"}
        assert [g.util for g in mi250] == [10.0 * n for n in range(8)]  # ROCr's GPU n: 10n %
        assert {g.mem_total_mib for g in mi250} == {65520}  # MiB in, MiB out: the MoAI GPU
        assert (mi250[0].temp_c, mi250[0].edge_temp_c, mi250[0].mem_temp_c) == (48, 41, 52)
        assert all(g.uuid.endswith("-7e20764e2714") for g in mi250)
        simulated = nodes["node01"].gpus  # read under its prefixed names
        assert len(simulated) == 8 and all(g.util is not None for g in simulated)
    finally:
        running.stop()


def test_nodes_not_shown_are_summarised_exactly_by_prometheus(cluster, monkeypatch):
    """node01 GPU by GPU, the other nodes as Prometheus's summaries: each summary is what its
    GPUs read one by one (the exporters' clock is frozen), and the cluster line is the same."""
    truth = clean_snapshot(PrometheusBackend.from_config(cluster.url).sample())[0]
    by_name = {n.name: n for n in truth.nodes}
    backend = PrometheusBackend.from_config(cluster.url)
    backend.set_detail({"node01"})
    snapshot = clean_snapshot(backend.sample())[0]
    nodes = {n.name: n for n in snapshot.nodes}
    assert list(nodes) == NODES and nodes["node01"] == by_name["node01"]
    free = 0
    for name in ("node00", "node02", "node03"):
        expected = as_summary(by_name[name]).summary
        got = nodes[name].summary
        assert nodes[name].gpus == () and got is not None
        assert replace(got, util=0, power_w=0) == replace(expected, util=0, power_w=0), name
        assert got.util == pytest.approx(expected.util) and got.power_w == pytest.approx(
            expected.power_w
        )
        free += got.free
    assert 0 < free < 24  # some held, some free: the count is not trivially right
    flavors = Context().catalog.flavors
    line, exact = summarise(snapshot, (), flavors), summarise(truth, (), flavors)
    assert replace(line, mean_util=0, users=()) == replace(exact, mean_util=0, users=())
    assert line.mean_util == pytest.approx(exact.mean_util)
    # Through the pipeline, as the dashboard asks: the device's node (node00) GPU by GPU too.
    monkeypatch.setenv("MOAI_TUI_CONFIG_DIR", cluster.env["MOAI_TUI_CONFIG_DIR"])
    monkeypatch.setenv("MOAI_TUI_SIM_TIME", FROZEN)
    assert cli(cluster, "switch", "-M", "xLarge.512GB").returncode == 0
    ctx = Context(backend_spec="prometheus", prometheus_url=cluster.url)
    ctx.set_detail({"node03"})
    sample = take_sample(ctx)
    listed = {n.name for n in sample.snapshot.nodes if n.summary is None}
    assert listed == {"node00", "node03"}
    assert sample.views[0].gpus == by_name["node00"].gpus
