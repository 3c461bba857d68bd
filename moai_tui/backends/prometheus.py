"""Backend `prometheus`: a whole cluster as one accelerator, from the Prometheus that already
scrapes dcgm-exporter (NVIDIA) or device-metrics-exporter (AMD) on every node.

A refresh is two queries whatever the cluster's size: every per-GPU metric in one (reduced per
GPU on the server, tagged with the metric it came from), and `up` for the exporters. Nodes come
from the host label (`Hostname`, `hostname`, else the exporter's `instance`); a node seen before
whose series vanished, or whose exporter is `up == 0`, is shown down. An exporter already down
when this process started costs a third query, once: its last series name its node and GPUs.
Names drift between exporter versions, so they live in one alias table with their unit scales.

Label values (node names above all) are data, never PromQL: they go into queries as escaped
string literals, matched with `=`.
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
from moai_tui.model import NVIDIA_DRIVER, ClusterSnapshot, Gpu, Job, JobRequest, Node
from moai_tui.parsing import is_number

NOT_SUPPORTED = 9.0e18  # DCGM's "not supported" sentinel is about 9.2e18
# Field -> [(metric, scale to our unit)], first present wins. dcgm-exporter up to 4.8, the
# DCGM 4.7 renames, AMD device-metrics-exporter 1.5. AMD's VRAM "MB" are MiB: amdsmi divides
# bytes by 1024 * 1024 (amd_smi.cc), an MI250 GCD's 64 GB read 65520.
ALIASES: dict[str, list[tuple[str, float]]] = {
    "util": [("DCGM_FI_DEV_GPU_UTIL", 1.0), ("gpu_gfx_activity", 1.0)],
    "mem_util": [("gpu_umc_activity", 1.0)],
    "mem_used_mib": [("DCGM_FI_DEV_FB_USED", 1.0), ("gpu_used_vram", 1.0)],
    "mem_free_mib": [("DCGM_FI_DEV_FB_FREE", 1.0), ("gpu_free_vram", 1.0)],
    "mem_total_mib": [("gpu_total_vram", 1.0)],
    "temp_c": [
        ("DCGM_FI_DEV_GPU_TEMP", 1.0),
        ("DCGM_FI_DEV_GPU_TEMP_CELSIUS", 1.0),
        ("gpu_junction_temperature", 1.0),
        ("gpu_edge_temperature", 1.0),
    ],
    "mem_temp_c": [("DCGM_FI_DEV_MEMORY_TEMP", 1.0), ("gpu_memory_temperature", 1.0)],
    "edge_temp_c": [("gpu_edge_temperature", 1.0)],
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
    "gpu_uuid",
    "modelName",
    "card_series",
    "card_model",
    "instance",
    "DCGM_FI_DRIVER_VERSION",
    # AMD: a partitioned GPU (MI300X in CPX mode) is one GPU per partition, each with its gpu_id
    "gpu_partition_id",
    "gpu_compute_partition_type",
    "gpu_memory_partition_type",
    # Who holds a GPU: AMD's Slurm integration, and dcgm-exporter's (moai-tui exporter's)
    "job_id",
    "job_user",
    "hpc_job",
    "hpc_user",
)
JOB_LABELS = (("job_id", "job_user"), ("hpc_job", "hpc_user"))
# The AMD exporter puts its MetricsFieldPrefix (any Prometheus name, e.g. "amd_") before every
# name it exports: its names are matched with or without one.
AMD_NAMES = frozenset(m for aliases in ALIASES.values() for m, _ in aliases if m.startswith("gpu_"))
TAG = "moai_metric"
# The used-memory metric -> how its vendor gives the rest: the total, or what is free.
MEMORY_PAIRS = {
    "DCGM_FI_DEV_FB_USED": ("free", "DCGM_FI_DEV_FB_FREE"),
    "gpu_used_vram": ("total", "gpu_total_vram"),
}
HOST_LABELS = ("Hostname", "hostname", "instance")  # which names a node, first present wins
INDEX_LABELS = ("gpu", "gpu_id")
# How far back the last series of an exporter that is down names its node and GPUs.
DOWN_LOOKBACK = "7d"
TOKEN_ENV = "MOAI_TUI_PROMETHEUS_TOKEN"
USER_ENV = "MOAI_TUI_PROMETHEUS_USER"
PASSWORD_ENV = "MOAI_TUI_PROMETHEUS_PASSWORD"
URL_ENV = "MOAI_TUI_PROMETHEUS_URL"


def series_of(metric: str, matchers: Sequence[str] = ()) -> str:
    """A selector of `metric`'s series; an AMD name also under any prefix."""
    if metric in AMD_NAMES:
        matchers = [f'__name__=~".*{metric}"', *matchers]
        return f"{{{','.join(matchers)}}}"
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def per_gpu_query() -> str:
    """All per-GPU metrics in one query: reduced per GPU on the server (a GPU shared by several
    pods appears once), each series tagged with the metric it came from."""
    by = ", ".join(GPU_LABELS)
    metrics = dict.fromkeys(metric for aliases in ALIASES.values() for metric, _ in aliases)
    parts = [
        f'label_replace(max by ({by}) ({series_of(metric)}), "{TAG}", "{metric}", "", "")'
        for metric in metrics
    ]
    return " or ".join(parts)


def promql_string(text: str) -> str:
    """`text` as a PromQL double-quoted string literal (Go's escapes; JSON's are a subset)."""
    return json.dumps(text, ensure_ascii=False)


def regex_literal(text: str) -> str:
    """`text` as an RE2 pattern matching exactly it (PromQL's `=~` anchors both ends)."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in text)


def gpu_selector(metric: str, where: Sequence[tuple[str, str, str, Sequence[str]]]) -> str:
    """`metric` on exactly these GPUs, one per-GPU series each: `where` holds, per node, the
    label naming it, its name, the GPU index label and the index values (all when empty)."""
    parts = []
    for host_label, node, index_label, indices in where:
        matchers = [f"{host_label}={promql_string(node)}"]
        if indices:
            pattern = "|".join(regex_literal(i) for i in indices)
            matchers.append(f"{index_label}=~{promql_string(pattern)}")
        parts.append(series_of(metric, matchers))
    labels = sorted({label for h, _, i, _ in where for label in (h, i)})
    return f"max by ({', '.join(labels)}) ({' or '.join(parts)})"


def history_queries(
    util_metric: str, used_metric: str, where: Sequence[tuple[str, str, str, Sequence[str]]]
) -> tuple[str, str]:
    """(utilization %, memory %) of these GPUs as the live view computes them: each GPU once,
    utilization averaged, memory summed, from the metrics the live query last read (DCGM gives
    used and free memory, AMD used and total)."""
    util = f"avg({gpu_selector(util_metric, where)})"
    used = f"sum({gpu_selector(used_metric, where)})"
    kind, other = MEMORY_PAIRS.get(used_metric, MEMORY_PAIRS["DCGM_FI_DEV_FB_USED"])
    other_sum = f"sum({gpu_selector(other, where)})"
    total = other_sum if kind == "total" else f"({used} + {other_sum})"
    return util, f"100 * {used} / {total}"


def down_query(instances: Sequence[str]) -> str:
    """What exporters now down served last, per GPU, labelled as the live query labels it."""
    names = "|".join(
        f".*{metric}" if metric in AMD_NAMES else metric for metric, _ in ALIASES["util"]
    )
    parts = " or ".join(
        f'last_over_time({{__name__=~"{names}",instance={promql_string(i)}}}[{DOWN_LOOKBACK}])'
        for i in instances
    )
    return f"max by ({', '.join(GPU_LABELS)}) ({parts})"


def result_list(body: bytes, what: str) -> list:
    """The result list of a query answer; raises BackendError with the server's own error."""
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
    return result


def parse_vector(body: bytes, what: str) -> list[tuple[dict, float | None]]:
    """(labels, value) of an instant-query answer; raises BackendError naming what is wrong."""
    result = result_list(body, what)
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
        source: str = "prometheus URL",
    ):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise UsageError(f"{source} {redact(url)!r} must look like http://host:9090")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, port
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
        series = result_list(body, what)
        try:
            values = series[0]["values"] if series else []
            return [(float(t), _number(v)) for t, v in values]
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise BackendError(f"prometheus: {what}: unexpected answer ({error!r:.60})") from None


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) or abs(value) >= NOT_SUPPORTED else value


def redact(url: str) -> str:
    """The URL without user, password, query or fragment: safe to print, even when it is not
    a URL at all."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.rpartition("@")[2].partition("?")[0].partition("#")[0]
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


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
    scheduler = None

    def __init__(self, client: PrometheusClient, clock=time.time):
        self.client = client
        self.clock = clock
        self.known: dict[str, tuple[Gpu, ...]] = {}  # node -> its GPUs as last seen
        self.instances: dict[str, set[str]] = {}  # exporter address -> the nodes it serves
        # How each node's series are labelled: the label naming it, the GPU index label, and
        # each GPU's index value as the exporter writes it (history asks for exactly those).
        self.node_labels: dict[str, tuple[str, str]] = {}
        self.index_values: dict[tuple[str, int], str] = {}
        # Per node, the metrics its utilization and used memory were read from (the vendor's).
        self.node_metrics: dict[str, dict[str, str]] = {}
        self.driver = "-"
        self._asked: set[str] = set()  # down exporters whose last series were asked for
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error = ""

    @classmethod
    def from_config(
        cls, url: str | None, settings: PrometheusSettings | None = None
    ) -> PrometheusBackend:
        """`url` (--prometheus-url), else the environment, else config.toml's checked values."""
        settings = settings or PrometheusSettings()
        if url:
            source = "prometheus URL"
            if urlsplit(url).password is not None:
                raise UsageError(
                    "the prometheus URL on the command line holds a password, which every user "
                    f"of this machine sees in `ps`: give it in {PASSWORD_ENV} (or password in "
                    "[prometheus] of config.toml) and the URL without it"
                )
        elif os.environ.get(URL_ENV):
            url, source = os.environ[URL_ENV], URL_ENV
        elif settings.url:
            url, source = settings.url, "url in [prometheus] of config.toml"
        else:
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
            source=source,
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
        down = {labels.get("instance", "") for labels, value in up if value == 0} - {""}
        serving = {labels.get("instance") for labels, _ in series}
        unnamed = sorted(down - serving - set(self.instances) - self._asked)
        if unnamed:  # down since before this process looked: their last series name them
            self._asked |= set(unnamed)  # once: a node that never served GPUs stays unknown
            try:
                self._learn_down(self.client.query(down_query(unnamed), "down exporters"))
            except BackendError:
                pass  # (an old Prometheus without last_over_time) the live nodes still stand
        return self._snapshot(now, series, down)

    def _node_of(self, labels: dict) -> tuple[str, str, str, str] | None:
        """(node, its label, GPU index value, its label) of a series, None without a node."""
        host_label = next((h for h in HOST_LABELS if labels.get(h)), None)
        if host_label is None:
            return None
        index_label = next((i for i in INDEX_LABELS if i in labels), INDEX_LABELS[0])
        return labels[host_label], host_label, labels.get(index_label) or "0", index_label

    def _learn_down(self, series) -> None:
        seen: dict[str, dict[str, str]] = {}  # node -> index value -> model
        for labels, _ in series:
            named = self._node_of(labels)
            if named is None:
                continue
            node, host_label, index, index_label = named
            self.instances.setdefault(labels.get("instance", ""), set()).add(node)
            self.node_labels.setdefault(node, (host_label, index_label))
            seen.setdefault(node, {})[index] = _model(labels)
        for node, gpus in seen.items():
            if node not in self.known:
                self.known[node] = tuple(
                    sorted(
                        (Gpu(node, _index(i), m, lost=True) for i, m in gpus.items()),
                        key=lambda g: g.index,
                    )
                )

    def _snapshot(self, now: float, series, down_instances: set[str]) -> ClusterSnapshot:
        fields: dict[tuple[str, str], dict] = {}  # (node, gpu) -> field -> (rank, value)
        meta: dict[tuple[str, str], dict] = {}
        rank: dict[str, list[tuple[str, int, float]]] = {}  # metric -> the fields it gives
        for field, aliases in ALIASES.items():
            for i, (metric, scale) in enumerate(aliases):
                rank.setdefault(metric, []).append((field, i, scale))
        for labels, value in series:
            metric = labels.get(TAG)
            named = self._node_of(labels)
            if metric not in rank or named is None:
                continue
            node, host_label, gpu, index_label = named
            self.node_labels[node] = (host_label, index_label)
            self.index_values[(node, _index(gpu))] = gpu
            if labels.get("instance"):
                self.instances.setdefault(labels["instance"], set()).add(node)
            if labels.get("DCGM_FI_DRIVER_VERSION"):
                self.driver = labels["DCGM_FI_DRIVER_VERSION"]
            slot = fields.setdefault((node, gpu), {})
            for field, order, scale in rank[metric]:
                if field in ("util", "mem_used_mib"):
                    self.node_metrics.setdefault(node, {})[field] = metric
                if field not in slot or order < slot[field][0]:
                    slot[field] = (order, None if value is None else value * scale)
            meta.setdefault((node, gpu), labels)
        down: set[str] = set()
        for instance in down_instances:  # every node that exporter serves
            down |= self.instances.get(instance, set())
        nodes: dict[str, list[Gpu]] = {}
        for (node, gpu), slot in fields.items():
            nodes.setdefault(node, []).append(self._gpu(node, gpu, slot, meta[(node, gpu)]))
        out = []
        live = {name for name in nodes if name not in down}
        for name in sorted(set(nodes) | set(self.known)):
            if name in nodes and name not in down:
                gpus = tuple(sorted(nodes[name], key=lambda g: g.index))
                self.known[name] = gpus
                out.append(Node(name, gpus))
            else:  # its exporter is down or its series vanished: shown down, not dropped
                seen = self.known.get(name) or nodes.get(name, ())
                lost = tuple(Gpu(name, g.index, g.model, lost=True, uuid=g.uuid) for g in seen)
                out.append(Node(name, lost, up=False))
        return ClusterSnapshot(
            time=now,
            backend=self.name,
            user=os.environ.get("USER", "-"),
            nodes=tuple(out),
            jobs=_jobs(meta, live),
            # The one version Prometheus knows is the NVIDIA driver's, from dcgm-exporter's
            # label; nothing says which is the latest.
            platform=NVIDIA_DRIVER if self.driver != "-" else "Prometheus",
            version_current=self.driver,
            version_latest="-",
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
        partition = labels.get("gpu_partition_id", "")
        return Gpu(
            node=node,
            index=_index(gpu),
            model=_model(labels),
            util=value("util"),
            mem_util=value("mem_util"),
            mem_used_mib=None if used is None else int(used),
            mem_total_mib=None if total is None else int(total),
            temp_c=value("temp_c"),
            mem_temp_c=value("mem_temp_c"),
            power_w=value("power_w"),
            uuid=labels.get("UUID") or labels.get("gpu_uuid") or "",
            edge_temp_c=value("edge_temp_c"),
            compute_partition=labels.get("gpu_compute_partition_type", "").upper(),
            memory_partition=labels.get("gpu_memory_partition_type", "").upper(),
            partition_id=int(partition) if partition.isdigit() else None,  # "NA": none
            job_id=_job_number(labels),
        )

    def history(
        self, gpus: Sequence[Gpu], seconds: float, step: float
    ) -> list[tuple[float | None, float | None]]:
        """(util %, memory %) of these GPUs (a device's) over the last `seconds`, computed as
        the live view computes them: two range queries."""
        where = []
        for node, indices in _by_node(gpus).items():
            if node not in self.node_labels:
                continue  # never seen: nothing to ask for
            host_label, index_label = self.node_labels[node]
            every = {i for (n, i) in self.index_values if n == node}
            values = (
                []
                if set(indices) >= every
                else [self.index_values.get((node, i), str(i)) for i in indices]
            )
            where.append((host_label, node, index_label, values))
        if not where:
            return []
        metrics = self.node_metrics.get(where[0][1], {})  # one vendor a device, as a rule
        util_query, mem_query = history_queries(
            metrics.get("util", ALIASES["util"][0][0]),
            metrics.get("mem_used_mib", ALIASES["mem_used_mib"][0][0]),
            where,
        )
        end = self.clock()
        util = self.client.query_range(util_query, end - seconds, end, step, "utilization history")
        mem_at = dict(
            self.client.query_range(mem_query, end - seconds, end, step, "memory history")
        )
        return [(u, mem_at.get(t)) for t, u in util]

    def local_catalog(self) -> None:
        return None

    def pinned_state(self) -> None:
        return None

    def replay_status(self) -> None:
        return None  # live

    def close(self) -> None:
        self.client.close()


def _index(value: str) -> int:
    """A GPU's index from its label value ("3"); 0 where the exporter wrote something else."""
    return int(value) if is_number(str(value)) else 0


def _model(labels: dict) -> str:
    """NVIDIA's modelName; AMD's product name (card_series, "AMD Instinct MI300X OAM"), else its
    card_model, which holds a board part number ("102-G30211-0C") on Instinct GPUs."""
    return labels.get("modelName") or labels.get("card_series") or labels.get("card_model") or ""


def _holder(labels: dict) -> tuple[str, str] | None:
    """(job id, user) of the job a series' GPU is allocated to, where the exporter says."""
    for id_label, user_label in JOB_LABELS:
        if labels.get(id_label):
            return labels[id_label], labels.get(user_label) or "-"
    return None


def _job_number(labels: dict) -> int | None:
    holder = _holder(labels)
    return int(holder[0]) if holder and holder[0].isdigit() else None


def _jobs(meta: dict[tuple[str, str], dict], live: set[str]) -> tuple[Job, ...]:
    """The scheduler's jobs as the exporters label the GPUs they hold (Slurm job ids, which
    are numbers; pid 0: not a process of this machine)."""
    held: dict[tuple[str, str], list[str]] = {}
    for (node, gpu), labels in sorted(meta.items()):
        holder = _holder(labels)
        if node in live and holder and holder[0].isdigit():
            held.setdefault(holder, []).append(f"{node}:{_index(gpu)}")
    return tuple(
        Job(int(job), 0, user, f"job {job}", None, tuple(locations))
        for (job, user), locations in sorted(held.items(), key=lambda item: int(item[0][0]))
    )


def _by_node(gpus: Sequence[Gpu]) -> dict[str, list[int]]:
    nodes: dict[str, list[int]] = {}
    for gpu in gpus:
        nodes.setdefault(gpu.node, []).append(gpu.index)
    return nodes
