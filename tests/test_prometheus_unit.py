"""The Prometheus backend against canned answers of the HTTP API, errors included."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from moai_tui.backends.prometheus import (
    TAG,
    PrometheusBackend,
    PrometheusClient,
    per_gpu_query,
    redact,
)
from moai_tui.errors import BackendError, UsageError


def series(metric: str, value, **labels) -> dict:
    return {"metric": {TAG: metric, **labels}, "value": [1780000000.0, str(value)]}


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
UP = [{"metric": {"__name__": "up", "instance": "10.0.0.1:9400"}, "value": [0, "1"]}]


class Canned:
    """A Prometheus stand-in: each query answers with what the test put in `replies`."""

    def __init__(self):
        self.replies = {"metrics": (200, answer(NVIDIA)), "up": (200, answer(UP))}
        self.requests: list[tuple[str, str, dict]] = []
        self.refuse_post = False
        self.delay = 0.0
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
                query = params.get("query", [""])[0]
                status, body = canned.replies["up" if query == "up" else "metrics"]
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

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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
    canned.replies["metrics"] = (200, answer(AMD))
    gpu = backend(canned.url).sample().nodes[0].gpus[0]
    assert (gpu.node, gpu.index, gpu.model) == ("amd1", 3, "MI300X")
    assert gpu.util == 70 and gpu.temp_c == 61
    assert gpu.mem_used_mib == 1_000_000 and gpu.mem_total_mib == 4_000_000  # MB -> MiB


def test_refresh_costs_two_queries_whatever_the_size(canned):
    many = [
        series("DCGM_FI_DEV_GPU_UTIL", 50, Hostname=f"n{i // 8:03d}", gpu=str(i % 8))
        for i in range(10_000)
    ]
    canned.replies["metrics"] = (200, answer(many))
    client = PrometheusClient(canned.url)
    snapshot = PrometheusBackend(client).sample()
    assert sum(len(n.gpus) for n in snapshot.nodes) == 10_000
    assert client.queries == 2
    assert len(per_gpu_query()) < 8000


def test_node_that_vanishes_or_is_down_is_shown_down(canned):
    b = backend(canned.url)
    b.sample()
    canned.replies["metrics"] = (200, answer([]))  # empty vector: its series vanished
    node = b.sample().nodes[0]
    assert node.name == "n1" and not node.up and all(g.lost for g in node.gpus)
    canned.replies["metrics"] = (200, answer(NVIDIA))
    canned.replies["up"] = (
        200,
        answer([{"metric": {"instance": "10.0.0.1:9400"}, "value": [0, "0"]}]),
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
    canned.replies["metrics"] = (status, body)
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
    canned.replies["metrics"] = (500, b"")
    with pytest.raises(BackendError) as caught:
        b.sample()
    assert "s3cret" not in str(caught.value)
    basic = PrometheusBackend(
        PrometheusClient(canned.url.replace("http://", "http://alice:hunter2@"))
    )
    canned.replies["metrics"] = (200, answer(NVIDIA))
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


def test_history_range_queries(canned):
    b = backend(canned.url)
    b.sample()
    matrix = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[1.0, "10"], [2.0, "20"]]}],
        },
    }
    canned.replies["metrics"] = (200, json.dumps(matrix).encode())
    assert b.history(["n1"], 60, 1) == [(10.0, 10.0), (20.0, 20.0)]


def test_exporter_serving_many_nodes_down_takes_them_all_down(canned):
    both = [
        series("DCGM_FI_DEV_GPU_UTIL", 10, Hostname=h, gpu="0", instance="10.0.0.9:9400")
        for h in ("a", "b")
    ]
    canned.replies["metrics"] = (200, answer(both))
    canned.replies["up"] = (
        200,
        answer([{"metric": {"instance": "10.0.0.9:9400"}, "value": [0, "0"]}]),
    )
    nodes = backend(canned.url).sample().nodes  # down on the very first sample: no crash
    assert [(n.name, n.up) for n in nodes] == [("a", False), ("b", False)]
    assert all(g.lost for n in nodes for g in n.gpus)
