"""The Prometheus backend against canned answers of the HTTP API, errors included."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from moai_tui.backends.prometheus import (
    ALIASES,
    DOWN,
    GPU_QUERY_FIELDS,
    PrometheusBackend,
    PrometheusClient,
    down_query,
    gpu_queries,
    history_queries,
    holder_queries,
    redact,
    refresh_queries,
    summary_queries,
)
from moai_tui.errors import BackendError, UsageError
from moai_tui.model import Gpu, Node, NodeSummary
from moai_tui.overview import job_rows, summarise


def series(metric: str, value, **labels) -> dict:
    return {"metric": {"__name__": metric, **labels}, "value": [1780000000.0, str(value)]}


def answer(result: list) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


NVIDIA = [
    series(
        "DCGM_FI_DEV_GPU_UTIL",
        41,
        Hostname="n1",
        gpu="0",
        modelName="NVIDIA H200",
        instance="10.0.0.1:9400",
        DCGM_FI_DRIVER_VERSION="580.159.04",
    ),
    series("DCGM_FI_DEV_FB_USED", 1000, Hostname="n1", gpu="0", instance="10.0.0.1:9400"),
    series("DCGM_FI_DEV_FB_FREE", 3000, Hostname="n1", gpu="0", instance="10.0.0.1:9400"),
    series("DCGM_FI_DEV_GPU_TEMP_CELSIUS", 55, Hostname="n1", gpu="0"),
    series("DCGM_FI_DEV_POWER_USAGE", 9.2e18, Hostname="n1", gpu="0"),  # "not supported"
    series("DCGM_FI_DEV_GPU_UTIL", 99, Hostname="n1", gpu="1", instance="10.0.0.1:9400"),
]
AMD = [
    series("gpu_gfx_activity", 70, hostname="amd1", gpu_id="3", card_model="MI300X"),
    series("gpu_used_vram", 1_048_576, hostname="amd1", gpu_id="3"),
    series("gpu_total_vram", 4_194_304, hostname="amd1", gpu_id="3"),
    series("gpu_junction_temperature", 61, hostname="amd1", gpu_id="3"),
]


def mi300x_cpx_series(host: str = "mi300-1") -> list[dict]:
    """One MI300X in CPX / NPS1 mode as device-metrics-exporter labels it (every label it sets,
    gpu_uuid and card_series enabled): 8 GPUs, one per partition; board-wide readings on
    partition 0 only (junction and memory temperature suppressed elsewhere, power 0), as its
    metrics list documents. Slurm job 4242 of alice holds partitions 0-3."""
    out = []
    for p in range(8):
        labels = {
            "hostname": host,
            "gpu_id": str(p),
            "gpu_uuid": f"{p:02x}ff74a1-0000-1000-80cb-a6eb2a5d2e2b",
            "card_series": "AMD Instinct MI300X OAM",
            "card_model": "102-G30211-0C",
            "card_vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
            "serial_number": "692251001124",
            "gpu_partition_id": str(p),
            "gpu_compute_partition_type": "cpx",
            "gpu_memory_partition_type": "nps1",
            "deployment_mode": "baremetal",
            "job_id": "4242" if p < 4 else "",
            "job_user": "alice" if p < 4 else "",
            "job_partition": "mi300" if p < 4 else "",
            "pod": "",
            "namespace": "",
            "container": "",
            "instance": "10.0.0.9:5000",
        }
        out += [
            series("gpu_gfx_activity", 20 + p, **labels),
            series("gpu_umc_activity", 5, **labels),
            series("gpu_used_vram", 300 + p, **labels),
            series("gpu_total_vram", 24576, **labels),
            series("gpu_package_power", 250 if p == 0 else 0, **labels),
        ]
        if p == 0:
            out += [
                series("gpu_junction_temperature", 55, **labels),
                series("gpu_edge_temperature", 41, **labels),
                series("gpu_memory_temperature", 50, **labels),
            ]
    return out


HOST = ("Hostname", "hostname", "instance")


class Canned:
    """A Prometheus stand-in: each query answers what the test put in `replies` for exactly
    that PromQL text; any other query is a bad request, as a real server answers a malformed
    one, so a swapped or mistyped query fails the test."""

    def __init__(self):
        self.replies = {DOWN: (200, answer([]))}  # no exporter down
        self.gpus(NVIDIA)
        self.requests: list[tuple[str, str, dict]] = []
        self.queries: list[str] = []
        self.refuse_post = False
        self.delay = 0.0
        self.arrive: threading.Barrier | None = None  # each request waits here, if set
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, method: str, params: dict):
                canned.requests.append((method, self.path.split("?")[0], dict(self.headers)))
                if method == "POST" and canned.refuse_post:
                    self.send_response(405)
                    self.end_headers()
                    return
                time.sleep(canned.delay)
                if canned.arrive is not None:
                    canned.arrive.wait()
                query = params.get("query", [""])[0]
                canned.queries.append(query)
                status, body = canned.answer(query)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except BrokenPipeError:  # the client timed out first, as the test meant
                    pass

            def do_GET(self):
                self._reply("GET", parse_qs(self.path.partition("?")[2]))

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                self._reply("POST", parse_qs(self.rfile.read(length).decode()))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, query: str) -> tuple[int, bytes]:
        """What was put in `replies` for the query; `DOWN or X` is the answers to DOWN and to X
        together, as Prometheus unites them (the first error or malformed one, if any, as
        it is)."""
        if query.startswith(f"{DOWN} or "):
            result = []
            for status, body in (self.answer(DOWN), self.answer(query.removeprefix(f"{DOWN} or "))):
                try:
                    assert status == 200
                    result += json.loads(body)["data"]["result"]
                except (AssertionError, ValueError, KeyError, TypeError):
                    return status, body  # an error or a malformed answer, as it was put
            return 200, answer(result)
        unknown = json.dumps(
            {"status": "error", "errorType": "bad_data", "error": f"canned: {query}"}
        )
        return self.replies.get(query, (400, unknown.encode()))

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def gpus(self, series: list[dict], where=None) -> None:
        """Answer the per-GPU queries (of `where`'s nodes) with these series, each in the query
        that asks for its metric."""
        queries = gpu_queries(where)
        parts: list[list[dict]] = [[] for _ in queries]
        for item in series:
            name = item["metric"]["__name__"]
            group = next(
                i
                for i, fields in enumerate(GPU_QUERY_FIELDS)
                if any(name.endswith(m) for f in fields for m, _ in ALIASES[f])
            )
            parts[group].append(item)
        for query, part in zip(queries, parts, strict=True):
            self.replies[query] = (200, answer(part))

    def summaries(
        self, where, groups: dict[tuple[str, str, str], dict], shared=False, held=(), readings=None
    ) -> None:
        """Answer the summary queries (readings of `readings`' nodes): per group (Hostname,
        hostname, instance), its figures by the name of the query that computes each; and the
        holder queries: per (labels of a job and node), its figures likewise (none held unless
        given)."""
        for part, query in holder_queries(where, shared).items():
            result = [
                {"metric": labels, "value": [1780000000.0, str(figures[part])]}
                for labels, figures in held
                if part in figures
            ]
            self.replies[query] = (200, answer(result))
        for part, query in summary_queries(where, shared, readings).items():
            result = [
                {
                    "metric": {k: v for k, v in zip(HOST, group, strict=True) if v},
                    "value": [1780000000.0, str(figures[part])],
                }
                for group, figures in groups.items()
                if part in figures
            ]
            self.replies[query] = (200, answer(result))

    def gpus_fail(self, status: int, body: bytes, where=None) -> None:
        """The first per-GPU query answers this (an error), the others nothing."""
        first, *rest = gpu_queries(where)
        self.replies[first] = (status, body)
        for query in rest:
            self.replies[query] = (200, answer([]))


@pytest.fixture
def canned():
    server = Canned()
    yield server
    server.close()


def backend(url: str, **kwargs) -> PrometheusBackend:
    return PrometheusBackend(PrometheusClient(url, timeout=kwargs.pop("timeout", 1.0), **kwargs))


def test_nvidia_answer_becomes_gpus_with_units_and_sentinel(canned):
    snapshot = backend(canned.url).sample()
    (node,) = snapshot.nodes
    gpu0, gpu1 = node.gpus
    assert node.name == "n1" and node.up and snapshot.attached
    assert (gpu0.util, gpu0.mem_used_mib, gpu0.mem_total_mib, gpu0.temp_c) == (41, 1000, 4000, 55)
    assert gpu0.power_w is None  # DCGM's not-supported sentinel is missing, not 9.2e18 W
    assert gpu0.model == "NVIDIA H200" and gpu1.util == 99 and gpu1.mem_used_mib is None
    assert snapshot.version_current == "580.159.04"


def test_one_vendor_absent_amd_only(canned):
    canned.gpus(AMD)
    gpu = backend(canned.url).sample().nodes[0].gpus[0]
    assert (gpu.node, gpu.index, gpu.model) == ("amd1", 3, "MI300X")
    assert gpu.util == 70 and gpu.temp_c == 61
    # AMD's "MB" are MiB (amdsmi divides bytes by 1024 * 1024): taken as they are
    assert gpu.mem_used_mib == 1_048_576 and gpu.mem_total_mib == 4_194_304


def test_amd_exporter_labels_in_full_mi300x_in_cpx_mode(canned):
    canned.gpus(mi300x_cpx_series())
    snapshot = backend(canned.url).sample()
    (node,) = snapshot.nodes
    assert node.name == "mi300-1" and len(node.gpus) == 8
    first, fifth = node.gpus[0], node.gpus[5]
    assert first.model == "AMD Instinct MI300X OAM"  # card_series, not the part number
    assert first.uuid == "00ff74a1-0000-1000-80cb-a6eb2a5d2e2b"
    assert [g.partition_id for g in node.gpus] == list(range(8))
    assert {(g.compute_partition, g.memory_partition) for g in node.gpus} == {("CPX", "NPS1")}
    assert (first.util, first.mem_util, first.temp_c, first.mem_temp_c) == (20, 5, 55, 50)
    assert (first.mem_used_mib, first.mem_total_mib, first.power_w) == (300, 24576, 250)
    assert (fifth.util, fifth.temp_c, fifth.power_w) == (25, None, 0)
    assert first.edge_temp_c == 41 and first.temp_c == 55  # junction first, edge kept apart
    assert [g.job_id for g in node.gpus] == [4242] * 4 + [None] * 4
    (job,) = snapshot.jobs
    assert (job.job_id, job.user, job.pid) == (4242, "alice", 0)
    assert job.gpus == tuple(f"mi300-1:{i}" for i in range(4))


def test_card_model_where_card_series_is_not_exported(canned):
    without = [
        {**s, "metric": {k: v for k, v in s["metric"].items() if k != "card_series"}}
        for s in mi300x_cpx_series()
    ]
    canned.gpus(without)
    assert backend(canned.url).sample().nodes[0].gpus[0].model == "102-G30211-0C"


def test_jobs_of_a_node_that_went_down_are_not_shown(canned):
    canned.gpus(mi300x_cpx_series())
    b = backend(canned.url)
    assert len(b.sample().jobs) == 1
    canned.replies[DOWN] = (
        200,
        answer([{"metric": {"__name__": "up", "instance": "10.0.0.9:5000"}, "value": [0, "0"]}]),
    )
    snapshot = b.sample()
    assert not snapshot.nodes[0].up and snapshot.jobs == ()


# A refresh of every node: `up` and the per-GPU queries, whatever the cluster's size.
REFRESH = len(refresh_queries())
HOLDERS = holder_queries()  # a refresh with summaries also asks who holds their GPUs


def test_refresh_costs_the_same_queries_whatever_the_size(canned):
    many = [
        series("DCGM_FI_DEV_GPU_UTIL", 50, Hostname=f"n{i // 8:03d}", gpu=str(i % 8))
        for i in range(10_000)
    ]
    canned.gpus(many)
    client = PrometheusClient(canned.url)
    snapshot = PrometheusBackend(client).sample()
    assert sum(len(n.gpus) for n in snapshot.nodes) == 10_000
    assert client.queries == REFRESH == 3
    assert all(len(query) < 400 for query in gpu_queries())


def test_node_that_vanishes_or_is_down_is_shown_down(canned):
    b = backend(canned.url)
    b.sample()
    canned.gpus([])  # empty vector: its series vanished
    node = b.sample().nodes[0]
    assert node.name == "n1" and not node.up and all(g.lost for g in node.gpus)
    canned.gpus(NVIDIA)
    canned.replies[DOWN] = (
        200,
        answer([{"metric": {"__name__": "up", "instance": "10.0.0.1:9400"}, "value": [0, "0"]}]),
    )
    assert not b.sample().nodes[0].up  # exporter reported down by `up == 0`


@pytest.mark.parametrize(
    "status, body, needle",
    [
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error at char 3"}',
            "parse error at char 3",
        ),
        (500, b"internal", "HTTP 500"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric"', "not JSON"),
        (200, b'{"status":"success","data":{}}', "no result list"),
        (
            200,
            b'{"status":"success","data":{"result":[{"metric":{},"value":["x"]}]}}',
            "malformed sample",
        ),
        (401, b"", "check the token"),
    ],
)
def test_errors_are_one_clear_line(canned, status, body, needle):
    canned.gpus_fail(status, body)
    with pytest.raises(BackendError) as caught:
        backend(canned.url).sample()
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_slow_server_times_out_then_backs_off(canned):
    canned.delay = 1.5
    b = backend(canned.url, timeout=0.3)
    with pytest.raises(BackendError, match="no answer within 0.3 s"):
        b.sample()
    asked = len(canned.requests)
    with pytest.raises(BackendError, match="retrying in"):
        b.sample()  # backing off: the server is not asked again at once
    assert len(canned.requests) == asked


def test_unreachable_server(canned):
    canned.close()
    with pytest.raises(BackendError, match="connection refused"):
        backend(canned.url).sample()


def test_post_refused_falls_back_to_get(canned):
    canned.refuse_post = True
    b = backend(canned.url)
    assert b.sample().nodes[0].name == "n1"
    assert [m for m, _, _ in canned.requests][-2:] == ["GET", "GET"]


def test_credentials_sent_never_shown(canned, monkeypatch):
    monkeypatch.setenv("MOAI_TUI_PROMETHEUS_TOKEN", "s3cret-token")
    b = PrometheusBackend.from_config(canned.url)
    b.sample()
    assert canned.requests[-1][2]["Authorization"] == "Bearer s3cret-token"
    canned.gpus_fail(500, b"")
    with pytest.raises(BackendError) as caught:
        b.sample()
    assert "s3cret" not in str(caught.value)
    basic = PrometheusBackend(
        PrometheusClient(canned.url.replace("http://", "http://alice:hunter2@"))
    )
    canned.gpus(NVIDIA)
    basic.sample()
    assert canned.requests[-1][2]["Authorization"] == "Basic YWxpY2U6aHVudGVyMg=="
    assert "hunter2" not in basic.client.where and "alice" not in basic.client.where
    assert redact("https://u:p@host:9090/prom?x=1") == "https://host:9090/prom"


def test_bad_url_and_missing_url(monkeypatch):
    monkeypatch.delenv("MOAI_TUI_PROMETHEUS_URL", raising=False)
    with pytest.raises(UsageError, match="needs a URL"):
        PrometheusBackend.from_config(None)
    with pytest.raises(UsageError, match="must look like http://host:9090"):
        PrometheusClient("ftp://x")


def matrix(values: list[float]) -> tuple[int, bytes]:
    points = [[float(t), str(v)] for t, v in enumerate(values, start=1)]
    result = [{"metric": {}, "values": points}]
    return 200, json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}
    ).encode()


def test_history_asks_for_the_devices_gpus_util_and_memory_apart(canned):
    b = backend(canned.url)
    gpu0 = b.sample().nodes[0].gpus[0]  # n1 has GPUs 0 and 1: the device holds only 0
    util, memory = history_queries(
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", [("Hostname", "n1", "gpu", ["0"])]
    )
    canned.replies[util], canned.replies[memory] = matrix([10, 20]), matrix([55, 65])
    assert b.history([gpu0], 60, 1) == [(10.0, 55.0), (20.0, 65.0)]
    assert canned.queries[-2:] == [util, memory]
    both = history_queries(
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", [("Hostname", "n1", "gpu", [])]
    )
    canned.replies[both[0]], canned.replies[both[1]] = matrix([1]), matrix([2])
    assert b.history(b.sample().nodes[0].gpus, 60, 1) == [(1.0, 2.0)]  # whole node: no gpu=~


def test_history_of_amd_and_of_nodes_keyed_by_instance(canned):
    by_instance = [
        series("DCGM_FI_DEV_GPU_UTIL", 5, instance="10.0.0.7:9400", gpu="1"),
        series("DCGM_FI_DEV_FB_USED", 5, instance="10.0.0.7:9400", gpu="1"),
    ]
    canned.gpus(AMD + by_instance)
    b = backend(canned.url)
    nodes = {node.name: node for node in b.sample().nodes}
    amd, keyed = nodes["amd1"].gpus[0], nodes["10.0.0.7:9400"].gpus[0]
    util, memory = history_queries(
        "gpu_gfx_activity", "gpu_used_vram", [("hostname", "amd1", "gpu_id", [])]
    )
    canned.replies[util], canned.replies[memory] = matrix([70]), matrix([25])
    assert b.history([amd], 60, 1) == [(70.0, 25.0)]
    util, memory = history_queries(  # the same cluster, another vendor: its own metrics
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", [("instance", "10.0.0.7:9400", "gpu", [])]
    )
    canned.replies[util], canned.replies[memory] = matrix([40]), matrix([30])
    assert b.history([keyed], 60, 1) == [(40.0, 30.0)]
    assert b.history([Gpu("never-seen", 0)], 60, 1) == []


def test_backoff_doubles_from_1_s_to_a_30_s_cap(canned):
    now = [1000.0]
    b = PrometheusBackend(PrometheusClient(canned.url, timeout=1.0), clock=lambda: now[0])

    def fails_asking() -> None:
        asked = len(canned.queries)
        with pytest.raises(BackendError, match="HTTP 500"):
            b.sample()
        assert len(canned.queries) == asked + REFRESH  # a refresh's queries go out at once

    canned.gpus_fail(500, b"down for maintenance")
    fails_asking()
    for wait in (1, 2, 4, 8, 16, 30, 30):
        failed_at = now[0]
        now[0] = failed_at + wait - 0.01
        asked = len(canned.queries)
        with pytest.raises(BackendError, match=r"\(retrying in \d+ s\)$"):
            b.sample()
        assert len(canned.queries) == asked  # backing off: the server is left alone
        now[0] = failed_at + wait
        fails_asking()
    canned.gpus(NVIDIA)
    now[0] += 30
    assert b.sample().nodes  # a success resets the backoff: the next failure waits 1 s
    canned.gpus_fail(500, b"")
    fails_asking()
    now[0] += 1
    fails_asking()


def test_exporter_serving_many_nodes_down_takes_them_all_down(canned):
    both = [
        series("DCGM_FI_DEV_GPU_UTIL", 10, Hostname=h, gpu="0", instance="10.0.0.9:9400")
        for h in ("a", "b")
    ]
    canned.gpus(both)
    canned.replies[DOWN] = (
        200,
        answer([{"metric": {"__name__": "up", "instance": "10.0.0.9:9400"}, "value": [0, "0"]}]),
    )
    nodes = backend(canned.url).sample().nodes  # down on the very first sample: no crash
    assert [(n.name, n.up) for n in nodes] == [("a", False), ("b", False)]
    assert all(g.lost for n in nodes for g in n.gpus)


def test_one_shot_shows_an_exporter_already_down_by_its_last_series(canned):
    """`smi` runs once: it never saw the node whose exporter died, yet shows it down with its
    GPUs (a third query, asked once per down exporter), not a smaller accelerator."""
    dead, other = "10.0.0.2:9400", "10.0.0.3:9100"  # other: a node_exporter, no GPUs
    canned.replies[DOWN] = (
        200,
        answer(
            [
                {"metric": {"__name__": "up", "instance": dead}, "value": [0, "0"]},
                {"metric": {"__name__": "up", "instance": other}, "value": [0, "0"]},
            ]
        ),
    )
    last = [
        series("DCGM_FI_DEV_GPU_UTIL", 3, Hostname="n2", gpu=str(i), instance=dead)
        for i in range(8)
    ]
    canned.replies[down_query([dead, other])] = (200, answer(last))
    b = backend(canned.url)
    snapshot = b.sample()
    assert [(n.name, n.up, len(n.gpus)) for n in snapshot.nodes] == [
        ("n1", True, 2),
        ("n2", False, 8),
    ]
    assert all(g.lost for g in snapshot.nodes[1].gpus)
    assert len(canned.queries) == REFRESH + 1
    b.sample()  # asked once: the next refresh is two queries again, n2 still down
    assert len(canned.queries) == 2 * REFRESH + 1 and not b.sample().nodes[1].up


def test_a_prometheus_without_last_over_time_still_gives_the_live_nodes(canned):
    canned.replies[DOWN] = (
        200,
        answer([{"metric": {"__name__": "up", "instance": "x:1"}, "value": [0, "0"]}]),
    )
    assert [n.name for n in backend(canned.url).sample().nodes] == ["n1"]  # down query: 400


def test_versions_say_what_they_are(canned):
    snapshot = backend(canned.url).sample()
    assert (snapshot.platform, snapshot.version_current) == ("NVIDIA driver", "580.159.04")
    assert snapshot.version_latest == "-"  # nothing measured a "latest" version
    canned.gpus(AMD)
    amd = backend(canned.url).sample()
    assert (amd.platform, amd.version_current, amd.version_latest) == ("Prometheus", "-", "-")


def test_password_on_the_command_line_is_refused(canned, monkeypatch):
    with pytest.raises(UsageError, match="sees in `ps`") as caught:
        PrometheusBackend.from_config(canned.url.replace("//", "//alice:hunter2@"))
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("MOAI_TUI_PROMETHEUS_PASSWORD", "hunter2")
    b = PrometheusBackend.from_config(canned.url.replace("//", "//alice@"))
    b.sample()  # user in the URL, password from the environment: fine
    assert canned.requests[-1][2]["Authorization"] == "Basic YWxpY2U6aHVudGVyMg=="
    monkeypatch.setenv("MOAI_TUI_PROMETHEUS_URL", "http://bob:pw@127.0.0.1:9")
    assert PrometheusBackend.from_config(None).client.where == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("garbage", "MOAI_TUI_PROMETHEUS_URL 'garbage' must look like http://host:9090"),
        ("bob:pw@host:9090", "MOAI_TUI_PROMETHEUS_URL 'host:9090' must look like"),
        ("http://host:port", "MOAI_TUI_PROMETHEUS_URL 'http://host:port' must look like"),
        ("http://h:99999", "MOAI_TUI_PROMETHEUS_URL 'http://h:99999' must look like"),
    ],
)
def test_bad_url_from_the_environment_is_named_as_given(monkeypatch, url, shown):
    monkeypatch.setenv("MOAI_TUI_PROMETHEUS_URL", url)
    with pytest.raises(UsageError) as caught:
        PrometheusBackend.from_config(None)
    assert str(caught.value).startswith(shown) and "pw" not in str(caught.value)


def test_edge_temperature_alone_is_the_gpus_temperature_too(canned):
    """MI200 exports edge, not junction: it is both the GPU's temperature and its edge."""
    mi250 = [
        series("gpu_gfx_activity", 10, hostname="mi250-1", gpu_id="0", card_series="AMD MI250X"),
        series("gpu_edge_temperature", 39, hostname="mi250-1", gpu_id="0"),
    ]
    canned.gpus(mi250)
    gpu = backend(canned.url).sample().nodes[0].gpus[0]
    assert (gpu.temp_c, gpu.edge_temp_c, gpu.model) == (39, 39, "AMD MI250X")


def test_detail_nodes_are_listed_gpu_by_gpu_the_others_summarised(canned):
    """n1 is shown GPU by GPU; n2 and the node with both vendors' exporters (two groups, added
    up: its mean utilization weighs each GPU once) are summaries computed by Prometheus."""
    b = backend(canned.url)
    canned.gpus([*NVIDIA, series("DCGM_FI_DEV_GPU_UTIL", 5, Hostname="n2", gpu="0")])
    b.sample()  # every node: n1 is named by Hostname
    where = {"Hostname": {"n1"}}
    canned.gpus(NVIDIA, where)
    n2 = {"gpus": 8, "free": 3, "util": 40.0, "mem_used_mib": 1000, "mem_free_mib": 7000}
    canned.summaries(
        where,
        {
            ("n2", "", "10.0.0.2:9400"): {**n2, "temp_c": 71, "power_w": 800.5},
            ("mix", "", "10.0.0.3:9400"): {
                **{"gpus": 2, "free": 1, "util": 10.0, "mem_used_mib": 100, "mem_free_mib": 900},
                **{"temp_c": 50, "power_w": 300},
            },
            ("", "mix", "10.0.0.3:5000"): {
                **{"gpus": 6, "free": 6, "util": 50.0, "mem_used_mib": 600},
                **{"mem_free_mib": 1, "mem_total_mib": 6000, "temp_c": 60, "power_w": 100},
            },
        },
    )
    b.set_detail({"n1"})
    asked = len(canned.queries)
    snapshot = b.sample()
    nodes = {n.name: n for n in snapshot.nodes}
    assert [len(nodes["n1"].gpus), nodes["n1"].summary] == [2, None]
    assert nodes["n2"].gpus == ()
    assert nodes["n2"].summary == NodeSummary(8, 3, 0, 40.0, 1000, 8000, 71, 800.5)
    mix = NodeSummary(8, 7, 0, (2 * 10 + 6 * 50) / 8, 700, 1000 + 6000, 60, 400)
    assert nodes["mix"].summary == mix  # AMD's total is its own, not used + free
    refresh = len(refresh_queries(where)) + len(summary_queries(where)) + len(HOLDERS)
    assert len(canned.queries) - asked == refresh
    line = summarise(snapshot, (), ())
    assert (line.gpus, line.free, line.nodes) == (18, 3 + 7, 3)  # n1's two are busy
    # The cursor on n1, listed GPU by GPU: its readings come with its GPUs, none asked again.
    b.set_detail({"n1"}, readings={"n1"})
    asked = len(canned.queries)
    listed = nodes["n1"].gpus
    nodes = {n.name: n for n in b.sample().nodes}
    assert len(canned.queries) - asked == len(refresh_queries(where)) + 3 + len(HOLDERS)
    assert nodes["n1"].gpus == listed and listed[0].mem_used_mib == 1000
    assert nodes["n2"].summary == NodeSummary(8, 3, 0, 40.0, None, None, None, None)


def test_summaries_carry_readings_only_for_the_nodes_asked(canned):
    """The grid draws n3's figures only: memory, temperature and power are asked of n3 alone,
    n2 comes with its counts and utilization; drawn nowhere, none of them is asked at all."""
    b = backend(canned.url)
    b.set_detail(())
    n2 = {"gpus": 8, "free": 2, "util": 40.0}
    n3 = {"gpus": 4, "free": 0, "util": 90.0, "mem_used_mib": 300, "mem_free_mib": 100}
    n3 |= {"temp_c": 80, "power_w": 1200}
    groups = {("n2", "", "10.0.0.2:9400"): n2, ("n3", "", "10.0.0.3:9400"): n3}
    canned.summaries({}, groups)
    b.sample()  # every node's readings: n2 and n3 are named by Hostname
    b.set_detail((), readings={"n3"})
    of_n3 = {"Hostname": {"n3"}}
    canned.summaries({}, groups, readings=of_n3)
    asked = len(canned.queries)
    nodes = {n.name: n for n in b.sample().nodes}
    assert set(summary_queries({}, False, of_n3).values()) <= set(canned.queries[asked:])
    assert nodes["n2"].summary == NodeSummary(8, 2, 0, 40.0, None, None, None, None)
    assert nodes["n3"].summary == NodeSummary(4, 0, 0, 90.0, 300, 400, 80, 1200)
    b.set_detail((), readings=())
    canned.summaries({}, groups, readings={})
    asked = len(canned.queries)
    nodes = {n.name: n for n in b.sample().nodes}
    assert nodes["n3"].summary == NodeSummary(4, 0, 0, 90.0, None, None, None, None)
    assert len(canned.queries) - asked == len(refresh_queries({})) + 3 + len(HOLDERS)


def test_jobs_on_summarised_nodes_are_counted_whole(canned):
    """Job 7 holds n1's GPU 0 (listed) and 4 GPUs of n2 (summarised), job 9 three of n2 only:
    the jobs table and the GPUs by user count every GPU, and a job's utilization is the mean
    over all its GPUs (n2's four known ones sum to 300)."""
    held_n1 = series(
        "DCGM_FI_DEV_GPU_UTIL", 20, Hostname="n1", gpu="0", hpc_job="7", hpc_user="ann"
    )
    b = backend(canned.url)
    canned.gpus([held_n1, series("DCGM_FI_DEV_GPU_UTIL", 5, Hostname="n2", gpu="0")])
    b.sample()
    where = {"Hostname": {"n1"}}
    canned.gpus([held_n1], where)
    n2 = {"Hostname": "n2", "instance": "10.0.0.2:9400"}
    canned.summaries(
        where,
        {("n2", "", "10.0.0.2:9400"): {"gpus": 8, "free": 1, "util": 60.0}},
        held=[
            ({**n2, "hpc_job": "7", "hpc_user": "ann"}, {"gpus": 4, "util": 300}),
            ({**n2, "job_id": "9", "job_user": "bo"}, {"gpus": 3, "unknown": 1, "util": 100}),
            ({**n2, "hpc_job": "x"}, {"gpus": 1, "util": 1}),  # no job id: nobody
        ],
    )
    b.set_detail({"n1"})
    snapshot = b.sample()
    seven, nine = snapshot.jobs
    assert (seven.job_id, seven.user, seven.gpus, seven.summarised) == (
        7,
        "ann",
        ("n1:0",),
        (("n2", 4),),
    )
    assert seven.util == (20 + 300) / 5 and nine.util == 100 / 2
    rows = {row.job.job_id: row for row in job_rows(snapshot, ())}
    assert (rows[7].gpus, rows[7].nodes, rows[9].gpus, rows[9].nodes) == (5, 2, 3, 1)
    assert summarise(snapshot, (), ()).users == (("ann", 5), ("bo", 3))


def test_summarised_nodes_and_jobs_follow_their_figures_from_one_refresh_to_the_next(canned):
    """Between scrapes Prometheus's figures stay the same: the nodes and jobs built from them
    are last refresh's again. Figures that changed give new ones, exactly as on a first
    refresh."""
    b = backend(canned.url)
    canned.gpus([series("DCGM_FI_DEV_GPU_UTIL", 5, Hostname=n, gpu="0") for n in ("n1", "n2")])
    b.sample()
    where = {"Hostname": {"n1"}}
    canned.gpus([series("DCGM_FI_DEV_GPU_UTIL", 5, Hostname="n1", gpu="0")], where)
    n2 = {"Hostname": "n2", "instance": "10.0.0.2:9400"}
    held = {**n2, "job_id": "9", "job_user": "bo"}

    def scraped(util: float, job_util: float) -> None:
        groups = {("n2", "", "10.0.0.2:9400"): {"gpus": 8, "free": 5, "util": util}}
        canned.summaries(where, groups, held=[(held, {"gpus": 3, "util": job_util})])

    scraped(40.0, 120)
    b.set_detail({"n1"})
    first = b.sample()
    again = b.sample()
    assert again.nodes[1] is first.nodes[1] and again.jobs[0] is first.jobs[0]
    scraped(45.0, 150)
    changed = b.sample()
    assert changed.nodes[1].summary == NodeSummary(8, 5, 0, 45.0, None, None, None, None)
    assert changed.jobs[0].util == 150 / 3
    fresh = backend(canned.url)
    fresh.sample()
    fresh.set_detail({"n1"})
    built_anew = fresh.sample()
    assert (built_anew.nodes, built_anew.jobs) == (changed.nodes, changed.jobs)


def test_a_node_not_seen_yet_is_asked_for_under_every_host_label(canned):
    b = backend(canned.url)
    b.set_detail({"amd1"})
    every = {label: {"amd1"} for label in HOST}
    canned.gpus(AMD, every)
    canned.summaries(every, {("n2", "", "i2"): {"gpus": 8, "free": 8}})
    assert [(n.name, len(n.gpus)) for n in b.sample().nodes] == [("amd1", 1), ("n2", 0)]
    named = {"hostname": {"amd1"}}  # as its series said
    canned.gpus(AMD, named)
    canned.summaries(named, {("n2", "", "i2"): {"gpus": 8, "free": 8}})
    asked = len(canned.queries)
    b.sample()
    assert set(refresh_queries(named)) <= set(canned.queries[asked:])


def test_a_summarised_node_down_or_vanished_is_shown_down_with_its_gpus_lost(canned):
    b = backend(canned.url)
    b.set_detail(())  # no node GPU by GPU: no per-GPU query at all
    nodes = {("n2", "", "10.0.0.2:9400"): {"gpus": 8, "free": 8}}
    canned.summaries({}, {**nodes, ("n3", "", "10.0.0.3:9400"): {"gpus": 4, "free": 0}})
    asked = len(canned.queries)
    assert all(n.up for n in b.sample().nodes)
    assert len(canned.queries) - asked == len(refresh_queries({})) + len(summary_queries({})) + len(
        HOLDERS
    )
    canned.replies[DOWN] = (
        200,
        answer([{"metric": {"__name__": "up", "instance": "10.0.0.2:9400"}, "value": [0, "0"]}]),
    )
    canned.summaries({}, nodes)  # n2's exporter is down (stale series linger); n3's vanished
    snapshot = b.sample()
    down = NodeSummary(8, 0, 8, None, None, None, None, None)
    assert snapshot.nodes == (
        Node("n2", (), up=False, summary=down),
        Node("n3", (), up=False, summary=NodeSummary(4, 0, 4, None, None, None, None, None)),
    )
    line = summarise(snapshot, (), ())
    assert (line.gpus, line.down_nodes, line.lost_gpus, line.free) == (0, 2, 12, 0)


def test_a_job_kept_from_the_last_refresh_leaves_its_node_when_that_goes_down(canned):
    """A job on a summarised node is last refresh's object again while its figures stay; its
    node's exporter going down (its stale series still answered) takes the job's GPUs there
    away at once, and they come back with it."""
    b = backend(canned.url)
    b.set_detail(())
    n2 = {"Hostname": "n2", "instance": "10.0.0.2:9400"}
    held = [({**n2, "job_id": "9", "job_user": "bo"}, {"gpus": 3, "util": 120})]
    canned.summaries({}, {("n2", "", "10.0.0.2:9400"): {"gpus": 8, "free": 5}}, held=held)
    first = b.sample()
    assert b.sample().jobs[0] is first.jobs[0] and first.jobs[0].summarised == (("n2", 3),)
    up_n2 = {"metric": {"__name__": "up", "instance": "10.0.0.2:9400"}, "value": [0, "0"]}
    canned.replies[DOWN] = (200, answer([up_n2]))
    assert b.sample().jobs[0].summarised == ()
    canned.replies[DOWN] = (200, answer([]))
    assert b.sample().jobs[0] == first.jobs[0]


def test_summaries_that_meet_a_gpu_shared_by_pods_are_asked_again_per_gpu(canned):
    """Prometheus refuses to match one GPU's used and free memory one to one where pods each
    carry its series: the summaries are asked again, each GPU reduced to one series first."""
    b = backend(canned.url)
    b.set_detail(())
    canned.summaries({}, {("k8s", "", "i"): {"gpus": 8, "free": 1}}, shared=False)
    refused = {
        "status": "error",
        "errorType": "execution",
        "error": 'found duplicate series for the match group {gpu="0"} on the right hand-side '
        "of the operation; many-to-many matching not allowed",
    }
    canned.replies[summary_queries({})["free"]] = (422, json.dumps(refused).encode())
    canned.summaries({}, {("k8s", "", "i"): {"gpus": 4, "free": 2}}, shared=True)
    (node,) = b.sample().nodes
    assert b.shared and (node.summary.gpus, node.summary.free) == (4, 2)


def test_a_gpu_seen_through_two_pods_is_one_gpu_at_its_highest_reading(canned):
    pods = [
        series("DCGM_FI_DEV_GPU_UTIL", 30, Hostname="k", gpu="0", pod="a"),
        series("DCGM_FI_DEV_GPU_UTIL", 70, Hostname="k", gpu="0", pod="b"),
        series("DCGM_FI_DEV_FB_USED", 10, Hostname="k", gpu="0", pod="a"),
    ]
    canned.gpus(pods)
    b = backend(canned.url)
    (node,) = b.sample().nodes
    (gpu,) = node.gpus
    assert (gpu.util, gpu.mem_used_mib) == (70, 10) and b.shared
    b.set_detail(())  # the summaries now reduce each GPU to one series
    canned.summaries({}, {("k", "", ""): {"gpus": 1, "free": 0}}, shared=True)
    assert b.sample().nodes[0].summary.gpus == 1


def test_a_node_with_both_vendors_gpus_lists_them_all(canned):
    """NVIDIA's gpu="0" and AMD's gpu_id="0" on one node are two GPUs (the summaries count
    both): AMD's are numbered after NVIDIA's."""
    mixed = [
        series("DCGM_FI_DEV_GPU_UTIL", 10 * i, Hostname="mix", gpu=str(i), modelName="H100")
        for i in range(2)
    ] + [
        series("gpu_gfx_activity", 50 + i, hostname="mix", gpu_id=str(i), card_series="MI300X")
        for i in range(2)
    ]
    canned.gpus(mixed)
    (node,) = backend(canned.url).sample().nodes
    assert [(g.index, g.model, g.util) for g in node.gpus] == [
        (0, "H100", 0),
        (1, "H100", 10),
        (2, "MI300X", 50),
        (3, "MI300X", 51),
    ]


def test_a_refresh_asks_its_queries_at_once(canned):
    """Every request waits at the server until all of a refresh's have arrived: asked one
    after another, the first would wait in vain and the refresh fail."""
    canned.arrive = threading.Barrier(REFRESH, timeout=10)
    assert backend(canned.url, timeout=20).sample().nodes[0].name == "n1"


async def test_a_slow_but_answering_prometheus_is_not_shown_live(canned, config_dir):
    """Answers that take longer than the dashboard waits: the header says STALE and how old
    its data is while one is out, and each sample says how long it took (Sample.took_s)."""
    from moai_tui.context import Context
    from moai_tui.tui.app import MoaiApp

    app = MoaiApp(
        Context(backend_spec="prometheus", prometheus_url=canned.url), 0.5, hang_after=0.5
    )
    async with app.run_test(size=(120, 40)) as pilot:

        async def until(predicate, what: str) -> None:
            deadline = time.monotonic() + 20
            while not predicate():
                assert time.monotonic() < deadline, f"never {what}: {app.header.plain!r}"
                await pilot.pause(0.05)

        await until(lambda: app.sample is not None, "a first sample")
        first = app.sample
        canned.delay = 1.5  # within the client's timeout: it answers, slowly
        await until(lambda: "STALE" in app.header.plain, "STALE")
        assert "last data" in app.header.plain and "live" not in app.header.plain
        await until(lambda: app.sample is not first and app.sample.took_s >= 1.5, "a slow sample")


def test_a_detail_of_every_node_is_every_gpu_without_summaries(canned):
    b = backend(canned.url)
    b.sample()
    b.set_detail({"n1", "n9"})  # every node known (and one that is not): no summary to ask
    asked = len(canned.queries)
    assert [len(n.gpus) for n in b.sample().nodes] == [2]
    assert sorted(canned.queries[asked:]) == sorted(refresh_queries())
