"""Backend `prometheus`: a whole cluster as one accelerator, from the Prometheus that already
scrapes dcgm-exporter (NVIDIA) or device-metrics-exporter (AMD) on every node.

A refresh is two queries whatever the cluster's size: every per-GPU metric in one (reduced per
GPU on the server, tagged with the metric it came from), and `up` for the exporters. Nodes come
from the host label; a node seen before whose series vanished, or whose exporter is `up == 0`,
is shown down. Names drift between exporter versions, so they live in one alias table with their
unit scales.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import ssl
import time
from collections.abc import Sequence
from urllib.parse import urlencode, urlsplit

from moai_tui.config import PrometheusSettings
from moai_tui.errors import BackendError, UsageError
from moai_tui.model import ClusterSnapshot, Gpu, JobRequest, Node
from moai_tui.parsing import is_number

MB_TO_MIB = 1e6 / 1048576
NOT_SUPPORTED = 9.0e18  # DCGM's "not supported" sentinel is about 9.2e18
# Field -> [(metric, scale to our unit)], first present wins. dcgm-exporter up to 4.8, the
# DCGM 4.7 renames, AMD device-metrics-exporter 1.5.
ALIASES: dict[str, list[tuple[str, float]]] = {
    "util": [("DCGM_FI_DEV_GPU_UTIL", 1.0), ("gpu_gfx_activity", 1.0)],
    "mem_used_mib": [("DCGM_FI_DEV_FB_USED", 1.0), ("gpu_used_vram", MB_TO_MIB)],
    "mem_free_mib": [("DCGM_FI_DEV_FB_FREE", 1.0), ("gpu_free_vram", MB_TO_MIB)],
    "mem_total_mib": [("gpu_total_vram", MB_TO_MIB)],
    "temp_c": [
        ("DCGM_FI_DEV_GPU_TEMP", 1.0),
        ("DCGM_FI_DEV_GPU_TEMP_CELSIUS", 1.0),
        ("gpu_junction_temperature", 1.0),
        ("gpu_edge_temperature", 1.0),
    ],
    "mem_temp_c": [("DCGM_FI_DEV_MEMORY_TEMP", 1.0), ("gpu_memory_temperature", 1.0)],
    "power_w": [
        ("DCGM_FI_DEV_POWER_USAGE", 1.0),
        ("DCGM_FI_DEV_BOARD_POWER_WATTS", 1.0),
        ("gpu_power_usage", 1.0),
        ("gpu_package_power", 1.0),
    ],
}
GPU_LABELS = (
    "Hostname",
    "hostname",
    "gpu",
    "gpu_id",
    "UUID",
    "modelName",
    "card_model",
    "instance",
    "DCGM_FI_DRIVER_VERSION",
)
TAG = "moai_metric"
TOKEN_ENV = "MOAI_TUI_PROMETHEUS_TOKEN"
USER_ENV = "MOAI_TUI_PROMETHEUS_USER"
PASSWORD_ENV = "MOAI_TUI_PROMETHEUS_PASSWORD"
URL_ENV = "MOAI_TUI_PROMETHEUS_URL"


def per_gpu_query() -> str:
    """All per-GPU metrics in one query: reduced per GPU on the server (a GPU shared by several
    pods appears once), each series tagged with the metric it came from."""
    by = ", ".join(GPU_LABELS)
    parts = [
        f'label_replace(max by ({by}) ({metric}), "{TAG}", "{metric}", "", "")'
        for aliases in ALIASES.values()
        for metric, _ in aliases
    ]
    return " or ".join(parts)


def parse_vector(body: bytes, what: str) -> list[tuple[dict, float | None]]:
    """(labels, value) of an instant-query answer; raises BackendError naming what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BackendError(f"prometheus: {what}: the answer is not JSON ({error})") from None
    if not isinstance(data, dict) or data.get("status") != "success":
        message = data.get("error") if isinstance(data, dict) else None
        raise BackendError(f"prometheus: {what}: {message or 'not a success answer'}")
    result = data.get("data", {}).get("result") if isinstance(data.get("data"), dict) else None
    if not isinstance(result, list):
        raise BackendError(f"prometheus: {what}: answer has no result list")
    out = []
    for item in result:
        try:
            labels, (_, text) = item["metric"], item["value"]
            value = float(text)
        except (KeyError, TypeError, ValueError):
            raise BackendError(f"prometheus: {what}: malformed sample {item!r:.80}") from None
        if not isinstance(labels, dict):
            raise BackendError(f"prometheus: {what}: malformed labels {labels!r:.80}")
        if math.isnan(value) or math.isinf(value) or abs(value) >= NOT_SUPPORTED:
            value = None  # DCGM "not supported", or no value
        out.append((labels, value))
    return out


class PrometheusClient:
    """A small HTTP client for the query API: one kept-alive connection, a timeout, auth."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 3.0,
        verify: bool = True,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"prometheus URL {redact(url)!r} must look like http://host:9090")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.where = redact(url)
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        username = username or parts.username
        password = password or parts.password
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif username:
            pair = f"{username}:{password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.context = ssl.create_default_context()
        if not verify:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self.use_get = False  # some proxies refuse POST (405): then GET for good
        self.queries = 0
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self.scheme == "https":
                self._connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                self._connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout
                )
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def get(self, path: str, params: dict, what: str, allow_post: bool = True) -> bytes:
        self.queries += 1
        body = urlencode(params)
        method = "POST" if allow_post and not self.use_get else "GET"
        target = self.prefix + path + ("" if method == "POST" else f"?{body}")
        headers = dict(self.headers)
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):  # a kept-alive connection the server closed: one reconnect
            try:
                connection = self._connect()
                connection.request(method, target, body if method == "POST" else None, headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise BackendError(f"prometheus at {self.where}: connection closed") from None
            except TimeoutError:
                self.close()
                raise BackendError(
                    f"prometheus at {self.where}: no answer within {self.timeout:g} s"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                self.close()
                raise BackendError(f"prometheus at {self.where}: {describe(error)}") from None
        if response.status == 405 and method == "POST":
            self.use_get = True
            return self.get(path, params, what, allow_post=False)
        if response.status in (401, 403):
            raise BackendError(
                f"prometheus at {self.where}: {what}: HTTP {response.status}, "
                f"check the token or user in {TOKEN_ENV} / {USER_ENV}"
            )
        if response.status != 200 and response.status != 400 and response.status != 422:
            raise BackendError(f"prometheus at {self.where}: {what}: HTTP {response.status}")
        return data

    def query(self, promql: str, what: str) -> list[tuple[dict, float | None]]:
        return parse_vector(self.get("/api/v1/query", {"query": promql}, what), what)

    def query_range(
        self, promql: str, start: float, end: float, step: float, what: str
    ) -> list[tuple[float, float | None]]:
        body = self.get(
            "/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step}, what
        )
        try:
            data = json.loads(body)
            series = data["data"]["result"]
            values = series[0]["values"] if series else []
            return [(float(t), _number(v)) for t, v in values]
        except (ValueError, KeyError, TypeError, IndexError, RecursionError) as error:
            raise BackendError(f"prometheus: {what}: unexpected answer ({error!r:.60})") from None


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) or abs(value) >= NOT_SUPPORTED else value


def redact(url: str) -> str:
    """The URL without user, password or query: safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def describe(error: Exception) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is Prometheus running?)"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({error.reason})"
    return error.strerror or type(error).__name__ if isinstance(error, OSError) else str(error)


class PrometheusBackend:
    name = "prometheus"
    notice: str | None = None
    visible_devices_env = None  # the cluster's GPUs are other machines'

    def __init__(self, client: PrometheusClient, clock=time.time):
        self.client = client
        self.clock = clock
        self.known: dict[str, tuple[Gpu, ...]] = {}  # node -> its GPUs as last seen
        self.instances: dict[str, set[str]] = {}  # exporter address -> the nodes it serves
        self.host_label = "Hostname"
        self.util_metric = "DCGM_FI_DEV_GPU_UTIL"
        self.driver = "-"
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error = ""

    @classmethod
    def from_config(
        cls, url: str | None, settings: PrometheusSettings | None = None
    ) -> PrometheusBackend:
        """`url` (--prometheus-url), else the environment, else config.toml's checked values."""
        settings = settings or PrometheusSettings()
        url = url or os.environ.get(URL_ENV) or settings.url
        if not url:
            raise UsageError(
                f"the prometheus backend needs a URL: --prometheus-url URL, "
                f"{URL_ENV}, or url in [prometheus] of config.toml"
            )
        client = PrometheusClient(
            url,
            token=os.environ.get(TOKEN_ENV) or settings.token,
            username=os.environ.get(USER_ENV) or settings.username,
            password=os.environ.get(PASSWORD_ENV) or settings.password,
            timeout=settings.timeout,
            verify=not settings.insecure_skip_verify,
        )
        return cls(client)

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        now = self.clock()
        if now < self._retry_at:  # back off after a failure: say so without asking again
            raise BackendError(f"{self._last_error} (retrying in {self._retry_at - now:.0f} s)")
        try:
            series = self.client.query(per_gpu_query(), "GPU metrics")
            up = self.client.query("up", "exporter status")
        except BackendError as error:
            self._backoff = min(30.0, max(1.0, self._backoff * 2))
            self._retry_at = now + self._backoff
            self._last_error = str(error)
            raise
        self._backoff = 0.0
        return self._snapshot(now, series, up)

    def _snapshot(self, now: float, series, up) -> ClusterSnapshot:
        fields: dict[tuple[str, str], dict] = {}  # (node, gpu) -> field -> (rank, value)
        meta: dict[tuple[str, str], dict] = {}
        rank = {
            metric: (field, i, scale)
            for field, aliases in ALIASES.items()
            for i, (metric, scale) in enumerate(aliases)
        }
        for labels, value in series:
            metric = labels.get(TAG)
            if metric not in rank:
                continue
            node = labels.get("Hostname") or labels.get("hostname") or labels.get("instance")
            gpu = labels.get("gpu") or labels.get("gpu_id") or "0"
            if not node:
                continue
            if "Hostname" in labels or "hostname" in labels:
                self.host_label = "Hostname" if "Hostname" in labels else "hostname"
            if labels.get("instance"):
                self.instances.setdefault(labels["instance"], set()).add(node)
            if labels.get("DCGM_FI_DRIVER_VERSION"):
                self.driver = labels["DCGM_FI_DRIVER_VERSION"]
            field, order, scale = rank[metric]
            if field == "util":
                self.util_metric = metric
            slot = fields.setdefault((node, gpu), {})
            if field not in slot or order < slot[field][0]:
                slot[field] = (order, None if value is None else value * scale)
            meta.setdefault((node, gpu), labels)
        down: set[str] = set()
        for labels, value in up:
            if value == 0:  # every node that exporter serves
                instance = labels.get("instance", "")
                down |= self.instances.get(instance, {instance})
        nodes: dict[str, list[Gpu]] = {}
        for (node, gpu), slot in fields.items():
            nodes.setdefault(node, []).append(self._gpu(node, gpu, slot, meta[(node, gpu)]))
        out = []
        for name in sorted(set(nodes) | set(self.known)):
            if name in nodes and name not in down:
                gpus = tuple(sorted(nodes[name], key=lambda g: g.index))
                self.known[name] = gpus
                out.append(Node(name, gpus))
            else:  # its exporter is down or its series vanished: shown down, not dropped
                seen = self.known.get(name) or nodes.get(name, ())
                lost = tuple(Gpu(name, g.index, g.model, lost=True) for g in seen)
                out.append(Node(name, lost, up=False))
        return ClusterSnapshot(
            time=now,
            backend=self.name,
            user=os.environ.get("USER", "-"),
            nodes=tuple(out),
            platform="Prometheus",
            version_current=self.driver,
            version_latest=self.driver,
            host=self.client.where,
            attached=True,
        )

    @staticmethod
    def _gpu(node: str, gpu: str, slot: dict, labels: dict) -> Gpu:
        def value(field):
            return slot.get(field, (0, None))[1]

        used, free, total = value("mem_used_mib"), value("mem_free_mib"), value("mem_total_mib")
        if total is None and used is not None and free is not None:
            total = used + free  # FB_TOTAL is not exported by default
        return Gpu(
            node=node,
            index=int(gpu) if is_number(str(gpu)) else 0,
            model=labels.get("modelName") or labels.get("card_model") or "",
            util=value("util"),
            mem_used_mib=None if used is None else int(used),
            mem_total_mib=None if total is None else int(total),
            temp_c=value("temp_c"),
            mem_temp_c=value("mem_temp_c"),
            power_w=value("power_w"),
        )

    def history(
        self, nodes: Sequence[str], seconds: float, step: float
    ) -> list[tuple[float | None, float | None]]:
        """(util %, memory %) of these nodes over the last `seconds`: two range queries."""
        if not nodes:
            return []
        end = self.clock()
        pattern = "|".join(nodes)
        match = f'{self.host_label}=~"{pattern}"'
        util = self.client.query_range(
            f"avg({self.util_metric}{{{match}}})", end - seconds, end, step, "utilization history"
        )
        mem = self.client.query_range(
            f"100 * sum(DCGM_FI_DEV_FB_USED{{{match}}}) / (sum(DCGM_FI_DEV_FB_USED{{{match}}}) "
            f"+ sum(DCGM_FI_DEV_FB_FREE{{{match}}}))",
            end - seconds,
            end,
            step,
            "memory history",
        )
        mem_at = dict(mem)
        return [(u, mem_at.get(t)) for t, u in util]

    def local_catalog(self) -> None:
        return None

    def pinned_state(self) -> None:
        return None

    def close(self) -> None:
        self.client.close()
