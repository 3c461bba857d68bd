"""Backend `prometheus`: a whole cluster as one accelerator, from the Prometheus that already
scrapes dcgm-exporter (NVIDIA) or device-metrics-exporter (AMD) on every node.

A refresh asks, in queries Prometheus answers side by side: the per-GPU series of the nodes
shown GPU by GPU (every node unless the caller named some, `set_detail`); for every other node a
few figures computed by Prometheus (its GPUs, free GPUs, mean utilization; memory, hottest GPU
and power where the caller shows them), so the answer grows with the nodes, not the GPUs; and
the exporters that are down. Nodes come from the host label (`Hostname`, `hostname`, else the
exporter's `instance`); a node seen before whose series vanished, or whose exporter is
`up == 0`, is shown down. An exporter already down when this process started costs one more
query, once: its last series name its node and GPUs. Names drift between exporter versions, so
they live in one alias table with their unit scales.

Label values (node names above all) are data, never PromQL: they go into queries as escaped
string literals, matched exactly (`=`, or `=~` of escaped alternatives).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import http.client
import json
import math
import os
import ssl
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import urlencode, urlsplit

from moai_tui.config import PrometheusSettings
from moai_tui.errors import BackendError, UsageError
from moai_tui.model import NVIDIA_DRIVER, ClusterSnapshot, Gpu, Job, JobRequest, Node, NodeSummary
from moai_tui.parsing import is_number
from moai_tui.validate import BOUNDS
from moai_tui.view import BUSY_MEMORY_SHARE, BUSY_UTIL

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
METRICS = tuple(dict.fromkeys(metric for aliases in ALIASES.values() for metric, _ in aliases))
# The per-GPU series come in one query per line: utilization as the exporters wrote it (every
# label: who holds the GPU, its model, UUID, partition), then the other readings, values only.
GPU_QUERY_FIELDS = (
    ("util",),
    ("mem_util", "mem_used_mib", "mem_free_mib", "mem_total_mib"),
    ("temp_c", "edge_temp_c", "mem_temp_c", "power_w"),
)
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
AMD_NAMES = frozenset(m for m in METRICS if m.startswith("gpu_"))
TAG = "moai_metric"
# The used-memory metric -> how its vendor gives the rest: the total, or what is free.
MEMORY_PAIRS = {
    "DCGM_FI_DEV_FB_USED": ("free", "DCGM_FI_DEV_FB_FREE"),
    "gpu_used_vram": ("total", "gpu_total_vram"),
}
HOST_LABELS = ("Hostname", "hostname", "instance")  # which names a node, first present wins
INDEX_LABELS = ("gpu", "gpu_id")  # NVIDIA's, AMD's: the same node may have both
BY_NODE = ", ".join(HOST_LABELS)
BY_GPU = ", ".join(HOST_LABELS + INDEX_LABELS)
# Nobody holds a GPU whose series carry no job id (view.is_free's holder is a numeric one).
NOT_HELD = tuple(f'{label}!~"[0-9]+"' for label, _ in JOB_LABELS)
# How a summary adds up each field over a node's GPUs (of readings within validate's bounds).
SUMMED = {
    "util": "avg",
    "mem_used_mib": "sum",
    "mem_free_mib": "sum",
    "mem_total_mib": "sum",
    "temp_c": "max",
    "power_w": "sum",
}
# The exporters that are down: only those, not one `up` series per exporter (a node each, as a
# rule). A comparison that filters keeps the metric's name, which tells these series apart.
DOWN = "up == 0"
# The figures summary_queries asks of each node, in the order _read_summaries unpacks them
# (SUMMED's order).
SUMMARY_FIGURES = ("gpus", "free", *SUMMED)
# How far back the last series of an exporter that is down names its node and GPUs.
DOWN_LOOKBACK = "7d"
# Queries a refresh asks at once (one connection each): Prometheus runs them side by side.
POOL_SIZE = 4
TOKEN_ENV = "MOAI_TUI_PROMETHEUS_TOKEN"
USER_ENV = "MOAI_TUI_PROMETHEUS_USER"
PASSWORD_ENV = "MOAI_TUI_PROMETHEUS_PASSWORD"
URL_ENV = "MOAI_TUI_PROMETHEUS_URL"

# Where: host label -> the node names it holds (the nodes a query is about, by the label that
# names each; a node whose label is not known yet is under every host label).
Where = Mapping[str, Collection[str]]


def series_of(metric: str, matchers: Sequence[str] = ()) -> str:
    """A selector of `metric`'s series; an AMD name also under any prefix."""
    if metric in AMD_NAMES:
        matchers = [f'__name__=~".*{metric}"', *matchers]
        return f"{{{','.join(matchers)}}}"
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def names_of(metrics: Iterable[str]) -> str:
    """A `__name__` matcher for these metrics (AMD's under any prefix)."""
    pattern = "|".join(f".*{m}" if m in AMD_NAMES else m for m in metrics)
    return f"__name__=~{promql_string(pattern)}"


def one_of(nodes: Collection[str]) -> str:
    """An RE2 pattern matching exactly these names, as a PromQL string literal."""
    return promql_string("|".join(regex_literal(n) for n in sorted(nodes)))


def gpu_queries(where: Where | None = None) -> list[str]:
    """The per-GPU series of every metric the alias table names, in a few queries Prometheus
    answers side by side (GPU_QUERY_FIELDS). Utilization comes as the exporters wrote it,
    nothing to compute, each GPU's labels with it (a GPU seen through several pods is reduced
    by the client); the other readings with the labels that say whose they are only, each GPU
    reduced to one series by the server. With `where`, only those nodes' series."""
    queries = []
    for i, fields in enumerate(GPU_QUERY_FIELDS):
        names = names_of(dict.fromkeys(m for field in fields for m, _ in ALIASES[field]))
        if where is None:
            selected = f"{{{names}}}"
        elif where:
            selected = " or ".join(
                f"{{{names},{label}=~{one_of(nodes)}}}" for label, nodes in sorted(where.items())
            )
        else:
            continue
        queries.append(selected if i == 0 else f"max by (__name__, {BY_GPU}) ({selected})")
    return queries


def refresh_queries(where: Where | None = None) -> list[str]:
    """The per-GPU queries with the exporters that are down (DOWN) asked in the first: a refresh
    of a cluster fetched whole is 3 queries. Without per-GPU queries (no node GPU by GPU), DOWN
    alone."""
    first, *rest = gpu_queries(where) or [None]
    return [DOWN if first is None else f"{DOWN} or {first}", *rest]


def summary_queries(
    skip: Where | None = None, shared: bool = False, readings: Where | None = None
) -> dict[str, str]:
    """What each node (grouped by its host labels) sums up to, computed by Prometheus, one query
    per figure so that they run side by side: its GPUs (those that report a utilization), how
    many are free (view.is_free: no numeric job id, utilization under 5 % or unknown, memory
    under a tenth or unknown), and its readings within validate's bounds (SUMMED). A node with
    two vendors' exporters is two groups, which the client adds up. `skip`: nodes left out
    (those fetched GPU by GPU). `shared`: GPUs are seen through several series each (pods
    sharing a GPU), so each is first reduced to one. `readings`: the nodes whose memory,
    temperature and power are asked for (None: every node's; the utilization always is)."""
    not_skipped = [f"{label}!~{one_of(nodes)}" for label, nodes in sorted((skip or {}).items())]

    def per_gpu(metrics: Iterable[str], *matchers: str) -> str:
        selector = f"{{{','.join([names_of(metrics), *not_skipped, *matchers])}}}"
        return f"max by ({BY_GPU}) ({selector})" if shared else selector

    def of_nodes(metrics: Iterable[str], where: Where) -> list[str]:
        """Each GPU's series of `metrics` on these nodes, one selector per host label."""
        metrics = list(metrics)
        return [
            per_gpu(metrics, f"{label}=~{one_of(nodes)}") for label, nodes in sorted(where.items())
        ]

    def aliases(field: str) -> list[str]:
        return [metric for metric, _ in ALIASES[field]]

    # Utilization under 5 % or out of bounds (unknown once cleaned): |u - 52.5| > 47.5.
    low, high = BUSY_UTIL, BOUNDS["util"][1]
    idle = f"abs({per_gpu(aliases('util'), *NOT_HELD)} - {(low + high) / 2}) > {(high - low) / 2}"
    for used, (kind, other) in MEMORY_PAIRS.items():
        # Busy: used >= a tenth of used + free (or of total), in whole numbers: used * 9 >= free
        # (used * 10 >= total); for MiB counts below 2^24 just what is_free's float compares.
        # Under 1 MiB used is nothing used (is_free: 0 is no reading).
        parts = round(1 / BUSY_MEMORY_SHARE)
        times = parts - 1 if kind == "free" else parts
        used_gpus, other_gpus = per_gpu([used], *NOT_HELD), per_gpu([other], *NOT_HELD)
        busy = f"({used_gpus} >= 1) * {times} >= on ({BY_GPU}) {other_gpus}"
        idle = f"{idle} unless on ({BY_GPU}) ({busy})"
    queries = {
        "gpus": f"count by ({BY_NODE}) ({per_gpu(aliases('util'))})",
        "free": f"count by ({BY_NODE}) ({idle})",
    }
    for field, how in SUMMED.items():
        lowest, highest = BOUNDS.get(field, BOUNDS["mem_used_mib"])  # free memory: as used
        # One GPU may give two of power's names: per node, the first present. Other fields'
        # names are two vendors', or one sensor renamed (or junction and edge: the hotter).
        sets = [[m] for m in aliases(field)] if field == "power_w" else [aliases(field)]
        if field == "util" or readings is None:
            selected = [[per_gpu(names)] for names in sets]
        else:
            selected = [of_nodes(names, readings) for names in sets]
        parts = [
            f"{how} by ({BY_NODE}) ({_united(selectors)} >= {lowest} <= {highest})"
            for selectors in selected
            if selectors
        ]
        if parts:  # none: no node's readings are asked for
            queries[field] = " or ".join(parts)
    return queries


def _united(selectors: Sequence[str]) -> str:
    """Several selectors' series as one operand."""
    return selectors[0] if len(selectors) == 1 else f"({' or '.join(selectors)})"


def holder_queries(skip: Where | None = None, shared: bool = False) -> dict[str, str]:
    """Who holds the GPUs of the nodes not fetched GPU by GPU, per job and node (grouped by
    the job labels and the host labels), computed by Prometheus: the GPUs each job holds
    there, how many of them report no utilization within bounds (the exception, so as a rule
    an empty answer), and the sum of the others'. The answer grows with the jobs' nodes, not
    the GPUs; the jobs table and the GPUs by user stay whole."""
    not_skipped = [f"{label}!~{one_of(nodes)}" for label, nodes in sorted((skip or {}).items())]
    names = names_of(metric for metric, _ in ALIASES["util"])
    numeric = promql_string("[0-9]+")
    held = " or ".join(
        f"{{{','.join([names, *not_skipped, f'{label}=~{numeric}'])}}}" for label, _ in JOB_LABELS
    )
    by = ", ".join([label for pair in JOB_LABELS for label in pair] + list(HOST_LABELS))
    if shared:
        held = f"max by ({by}, {', '.join(INDEX_LABELS)}) ({held})"
    low, high = BOUNDS["util"]
    known = f"({held}) >= {low} <= {high}"
    return {
        "gpus": f"count by ({by}) ({held})",
        "unknown": f"count by ({by}) (({held}) unless ({known}))",
        "util": f"sum by ({by}) ({known})",
    }


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
    """(labels, value) of an instant-query answer; raises BackendError naming what is wrong.
    Tens of thousands of samples at a time: one try for them all."""
    result = result_list(body, what)
    out = []
    append = out.append
    item = None
    try:
        for item in result:
            labels, (_, text) = item["metric"], item["value"]
            value = float(text)
            if type(labels) is not dict:
                raise BackendError(f"prometheus: {what}: malformed labels {labels!r:.80}")
            # NaN, infinities and DCGM's "not supported" fail the comparison: no value.
            append((labels, value if abs(value) < NOT_SUPPORTED else None))
    except (KeyError, TypeError, ValueError):
        raise BackendError(f"prometheus: {what}: malformed sample {item!r:.80}") from None
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
        self.waited_s = 0.0  # the caller's time spent waiting for answers (benchmarks)
        # One kept-alive connection per thread: the caller's, and the pool's for query_many.
        self._local = threading.local()
        self._connections: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _connect(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self.scheme == "https":
                connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.add(connection)
        return connection

    def _drop(self) -> None:
        """Close this thread's connection (the server closed it, or it is in a bad state)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._lock:
                self._connections.discard(connection)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def get(self, path: str, params: dict, what: str, allow_post: bool = True) -> bytes:
        with self._lock:
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
                self._drop()
                if attempt == 2:
                    raise BackendError(f"prometheus at {self.where}: connection closed") from None
            except TimeoutError:
                self._drop()
                raise BackendError(
                    f"prometheus at {self.where}: no answer within {self.timeout:g} s"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                self._drop()
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

    def _ask(self, promql: str, what: str) -> bytes:
        return self.get("/api/v1/query", {"query": promql}, what)

    def query(self, promql: str, what: str) -> list[tuple[dict, float | None]]:
        started = time.perf_counter()
        body = self._ask(promql, what)
        self.waited_s += time.perf_counter() - started
        return parse_vector(body, what)

    def query_many(
        self, queries: Sequence[tuple[str, str]]
    ) -> list[list[tuple[dict, float | None]]]:
        """Instant queries (PromQL, what it is) asked at once, each on a connection of its own:
        Prometheus evaluates them side by side. Answers in the order asked, each parsed here as
        it lands while the others are still out; the first error is raised once all are in."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="prometheus")
        pool = self._pool
        futures = {
            pool.submit(self._ask, promql, what): i for i, (promql, what) in enumerate(queries)
        }
        landing = as_completed(futures)
        answers: list = [None] * len(queries)
        error: BackendError | None = None
        while True:
            started = time.perf_counter()
            future = next(landing, None)
            self.waited_s += time.perf_counter() - started
            if future is None:
                break
            i = futures[future]
            try:
                answers[i] = parse_vector(future.result(), queries[i][1])
            except BackendError as failed:
                error = error or failed
        if error is not None:
            raise error
        return answers

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
        self.detail: frozenset[str] | None = None  # nodes fetched GPU by GPU; None: all
        # Nodes whose summaries carry memory, temperature and power; None: all.
        self.reading_nodes: frozenset[str] | None = None
        # Node -> its GPUs as last seen, or only how many (a node seen as a summary): what a
        # node that goes down is shown with.
        self.known: dict[str, tuple[Gpu, ...] | int] = {}
        self.instances: dict[str, set[str]] = {}  # exporter address -> the nodes it serves
        self.host_labels: dict[str, set[str]] = {}  # node -> the labels that name it
        # Per GPU, how its series are labelled: the label naming its node, its index label and
        # value as the exporter writes them (history asks for exactly those).
        self.gpu_labels: dict[tuple[str, int], tuple[str, str, str]] = {}
        # Per node, the metrics its utilization and used memory were read from (the vendor's).
        self.node_metrics: dict[str, dict[str, str]] = {}
        self.driver = "-"
        # Whether a GPU was seen through several series of one metric (pods sharing it): the
        # summaries then reduce each GPU to one series first, which costs Prometheus more.
        self.shared = False
        self._fields: dict[str, tuple[tuple[str, int, float], ...]] = {}  # name -> fields
        self._asked: set[str] = set()  # down exporters whose last series were asked for
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error = ""
        # Last refresh's summarised nodes and jobs, by what they were built from: Prometheus's
        # figures change only where a scrape landed since (each node once a scrape interval,
        # a small part of them between two refreshes), so the rest are the same objects again.
        self._summarised: dict[str, tuple[tuple, Node]] = {}
        self._jobs_there: dict[tuple[int, str], tuple[dict[str, list], Job]] = {}

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

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        self.detail = None if nodes is None else frozenset(nodes)
        self.reading_nodes = None if readings is None else frozenset(readings)

    def _where(self, nodes: Collection[str]) -> dict[str, set[str]]:
        """The nodes by the labels that name them (every host label where not known yet)."""
        where: dict[str, set[str]] = {}
        for node in nodes:
            for label in self.host_labels.get(node) or HOST_LABELS:
                where.setdefault(label, set()).add(node)
        return where

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        now = self.clock()
        if now < self._retry_at:  # back off after a failure: say so without asking again
            raise BackendError(f"{self._last_error} (retrying in {self._retry_at - now:.0f} s)")
        with _collector_paused():
            return self._sample(now)

    def _sample(self, now: float) -> ClusterSnapshot:
        try:
            exporters_down, series, groups, holders = self._ask()
        except BackendError as error:
            self._backoff = min(30.0, max(1.0, self._backoff * 2))
            self._retry_at = now + self._backoff
            self._last_error = str(error)
            raise
        self._backoff = 0.0
        down = {labels.get("instance", "") for labels, _ in exporters_down} - {""}
        gpus = self._read_gpus(series)
        summaries = self._read_summaries(groups)
        held = _read_holders(holders)
        unnamed = sorted(down - set(self.instances) - self._asked)
        if unnamed:  # down since before this process looked: their last series name them
            self._asked |= set(unnamed)  # once: a node that never served GPUs stays unknown
            try:
                self._learn_down(self.client.query(down_query(unnamed), "down exporters"))
            except BackendError:
                pass  # (an old Prometheus without last_over_time) the live nodes still stand
        return self._snapshot(now, gpus, summaries, held, down)

    def _ask(self) -> tuple[list, list, dict[str, list], dict[str, list]]:
        """The exporters down, the detail nodes' per-GPU series, the other nodes' summaries and
        who holds their GPUs, asked at once. Summaries that find GPUs shared by pods (one GPU,
        several series: Prometheus refuses to match them one to one) are asked again, each GPU
        reduced to one first."""
        detail = self.detail
        if detail is not None and self.known and detail.issuperset(self.known):
            detail = None  # every node is shown: all GPU by GPU (new nodes too), no summaries
        where = None if detail is None else self._where(detail)
        # A node fetched GPU by GPU brings its readings with its GPUs: not asked for again (the
        # cursor's node, as a rule, which would cost 5 queries of empty answers).
        readings = (
            None
            if self.reading_nodes is None or detail is None
            else self._where(self.reading_nodes - detail)
        )
        while True:
            parts = {} if detail is None else summary_queries(where, self.shared, readings)
            holders = {} if detail is None else holder_queries(where, self.shared)
            gpus = refresh_queries(where)
            queries = [(promql, "GPU metrics and exporter status") for promql in gpus]
            queries += [(promql, f"nodes' {name}") for name, promql in parts.items()]
            queries += [(promql, f"jobs' {name}") for name, promql in holders.items()]
            try:
                answers = self.client.query_many(queries)
            except BackendError as error:
                if parts and not self.shared and "many-to-many" in str(error):
                    self.shared = True
                    continue
                raise
            exporters_down, series = [], []
            for answer in answers[: len(gpus)]:
                for item in answer:
                    (exporters_down if item[0].get("__name__") == "up" else series).append(item)
            rest = answers[len(gpus) :]
            return (
                exporters_down,
                series,
                dict(zip(parts, rest[: len(parts)], strict=True)),
                dict(zip(holders, rest[len(parts) :], strict=True)),
            )

    def _fields_of(self, name: str) -> tuple[tuple[str, int, float], ...]:
        """(field, rank among its aliases, scale) of each field a metric name gives; an AMD
        name under a prefix is its unprefixed name's."""
        fields = self._fields.get(name)
        if fields is None:
            metric = _unprefixed(name)
            fields = tuple(
                (field, rank, scale)
                for field, aliases in ALIASES.items()
                for rank, (alias, scale) in enumerate(aliases)
                if alias == metric
            )
            self._fields[name] = fields
        return fields

    def _read_gpus(self, series) -> dict[tuple[str, str, str], list]:
        """(node, index label, index value) -> [field -> (rank, value, metric), labels] of each
        GPU in an answer of per-GPU series. A GPU seen through several series of one metric
        (pods sharing it) reads their largest value, and marks the cluster `shared`."""
        gpus: dict[tuple[str, str, str], list] = {}
        known_fields = self._fields
        for labels, value in series:  # the hot loop of a refresh: _gpu_key inlined
            get = labels.get
            name = get("__name__", "")
            fields = known_fields.get(name)
            if fields is None:
                fields = self._fields_of(name)
            node = get("Hostname") or get("hostname") or get("instance")
            if not fields or not node:
                continue
            index = get("gpu")
            key = (
                (node, "gpu", index) if index is not None else (node, "gpu_id", get("gpu_id", "0"))
            )
            gpu = gpus.get(key)
            if gpu is None:
                gpu = gpus[key] = [{}, labels]
                if "instance" in labels:
                    self.instances.setdefault(labels["instance"], set()).add(node)
            slot = gpu[0]
            for field, rank, scale in fields:
                held = slot.get(field)
                scaled = value if value is None or scale == 1.0 else value * scale
                if held is None or rank < held[0]:
                    slot[field] = (rank, scaled, name)
                elif rank == held[0]:  # the same metric again: one GPU through several pods
                    self.shared = True
                    if scaled is not None and (held[1] is None or held[1] < scaled):
                        slot[field] = (rank, scaled, name)
            if fields[0][0] == "util":
                gpu[1] = labels  # who holds a GPU is read from its utilization's labels
        return gpus

    def _read_summaries(self, groups: dict[str, list]) -> dict[str, tuple]:
        """Node -> the figures of its summary (as _summary takes them), from the per-group
        answers of summary_queries; a node named in two groups (two vendors' exporters) is
        their sum."""
        figures: dict[tuple[str, str, str], list] = {}  # group -> SUMMARY_FIGURES in order
        for position, name in enumerate(SUMMARY_FIGURES):
            for labels, value in groups.get(name, ()):
                get = labels.get
                group = (get("Hostname", ""), get("hostname", ""), get("instance", ""))
                figure = figures.get(group)
                if figure is None:
                    figure = figures[group] = [None] * len(SUMMARY_FIGURES)
                figure[position] = value
        host_labels, instances = self.host_labels, self.instances
        summaries: dict[str, tuple] = {}
        several: dict[str, list] = {}  # node -> each group's figures, where two groups name it
        # Per node, not per series: a thousand nodes a refresh at 10,000 GPUs, so the labels
        # and exporters already known are checked before anything is allocated.
        for group, (gpus, free, util, used, free_mib, total, temp, power) in figures.items():
            hostname, lower, instance = group
            node = hostname or lower or instance
            if not node or not gpus:
                continue
            named_by = "Hostname" if hostname else "hostname" if lower else "instance"
            named = host_labels.get(node)
            if named is None:
                host_labels[node] = {named_by}
            elif named_by not in named:
                named.add(named_by)
            if instance:
                served = instances.get(instance)
                if served is None:
                    instances[instance] = {node}
                else:
                    served.add(node)
            if total is None and used is not None and free_mib is not None:
                total = used + free_mib  # FB_TOTAL is not exported by default
            part = (int(gpus), int(free or 0), util, used, total, temp, power)
            if node in summaries:  # a second vendor's exporter on the node: added up below
                several.setdefault(node, [summaries[node]]).append(part)
            else:
                summaries[node] = part
        for node, parts in several.items():
            summaries[node] = _added(parts)
        return summaries

    def _learn_down(self, series) -> None:
        """Nodes of exporters down since before this process looked, from their last series."""
        found: dict[tuple[str, str, str], list] = {}
        for labels, _ in series:
            key = _gpu_key(labels)
            if key is not None:
                found[key] = [{}, labels]  # no readings: it is down
                self.host_labels.setdefault(key[0], set()).add(_host_label(labels))
                if labels.get("instance"):
                    self.instances.setdefault(labels["instance"], set()).add(key[0])
        by_node: dict[str, list[Gpu]] = {}
        for (node, _, _), gpu in _numbered(found).items():
            by_node.setdefault(node, []).append(gpu)
        for node, gpus in by_node.items():
            if node not in self.known:
                self.known[node] = tuple(sorted(gpus, key=lambda g: g.index))

    def _snapshot(
        self,
        now: float,
        gpus: dict[tuple[str, str, str], list],
        summaries: dict[str, tuple],
        held_there: dict[tuple[int, str], dict[str, list]],
        down_instances: set[str],
    ) -> ClusterSnapshot:
        down: set[str] = set()
        for instance in down_instances:  # every node that exporter serves
            down |= self.instances.get(instance, set())
        listed: dict[str, list[Gpu]] = {}
        held: dict[tuple[int, str], list[Gpu]] = {}  # (job, user) -> the GPUs it holds
        for (node, index_label, value), gpu in _numbered(gpus).items():
            slot, labels = gpus[(node, index_label, value)]
            host_label = _host_label(labels)
            self.gpu_labels[(node, gpu.index)] = (host_label, index_label, value)
            if node not in listed:  # once a node: how it is named, which metrics it gives
                listed[node] = []
                self.host_labels.setdefault(node, set()).add(host_label)
                self.node_metrics[node] = {
                    field: _unprefixed(slot[field][2])
                    for field in ("util", "mem_used_mib")
                    if field in slot
                }
                if labels.get("DCGM_FI_DRIVER_VERSION"):
                    self.driver = labels["DCGM_FI_DRIVER_VERSION"]
            listed[node].append(gpu)
            if gpu.job_id is not None and node not in down:
                user = _holder(labels)[1]
                held.setdefault((gpu.job_id, user), []).append(gpu)
        out = []
        summarised, self._summarised = self._summarised, {}
        for name in sorted(set(listed) | set(summaries) | set(self.known)):
            if name in down or (name not in listed and name not in summaries):
                # Its exporter is down or its series vanished: shown down, not dropped.
                if name in listed:
                    seen: tuple[Gpu, ...] | int = tuple(listed[name])
                elif name in summaries:
                    seen = summaries[name][0]
                else:
                    seen = self.known[name]
                out.append(_down_node(name, self.known.get(name) or seen))
            elif name in listed:
                node_gpus = tuple(sorted(listed[name], key=lambda g: g.index))
                self.known[name] = node_gpus
                out.append(Node(name, node_gpus))
            else:
                figures = summaries[name]
                self.known[name] = figures[0]
                last = summarised.get(name)
                node = (
                    last[1]
                    if last is not None and last[0] == figures
                    else Node(name, (), summary=_summary(figures))
                )
                self._summarised[name] = (figures, node)
                out.append(node)
        jobs, self._jobs_there = _jobs(held, held_there, down, self._jobs_there)
        return ClusterSnapshot(
            time=now,
            backend=self.name,
            user=os.environ.get("USER", "-"),
            nodes=tuple(out),
            # The scheduler's jobs as the exporters label the GPUs they hold (Slurm job ids;
            # pid 0: not a process of this machine).
            jobs=jobs,
            # The one version Prometheus knows is the NVIDIA driver's, from dcgm-exporter's
            # label; nothing says which is the latest.
            platform=NVIDIA_DRIVER if self.driver != "-" else "Prometheus",
            version_current=self.driver,
            version_latest="-",
            host=self.client.where,
            attached=True,
        )

    def history(
        self, gpus: Sequence[Gpu], seconds: float, step: float
    ) -> list[tuple[float | None, float | None]]:
        """(util %, memory %) of these GPUs (a device's) over the last `seconds`, computed as
        the live view computes them: two range queries."""
        where: dict[tuple[str, str, str], list[str]] = {}
        for gpu in gpus:
            labels = self.gpu_labels.get((gpu.node, gpu.index))
            if labels is not None:  # never seen: nothing to ask for
                host_label, index_label, value = labels
                where.setdefault((gpu.node, host_label, index_label), []).append(value)
        if not where:
            return []
        entries = []
        for (node, host_label, index_label), values in where.items():
            every = {
                v
                for (n, _), (h, i, v) in self.gpu_labels.items()
                if (n, h, i) == (node, host_label, index_label)
            }
            entries.append((host_label, node, index_label, [] if set(values) >= every else values))
        metrics = self.node_metrics.get(entries[0][1], {})  # one vendor a device, as a rule
        util_query, mem_query = history_queries(
            metrics.get("util", ALIASES["util"][0][0]),
            metrics.get("mem_used_mib", ALIASES["mem_used_mib"][0][0]),
            entries,
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
    """(job id, user) of the job a series' GPU is allocated to, where the exporter says: the
    first numeric job id (a Slurm job's) of AMD's labels, then dcgm-exporter's."""
    for id_label, user_label in JOB_LABELS:
        if labels.get(id_label, "").isdigit():
            return labels[id_label], labels.get(user_label) or "-"
    return None


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector paused while answers of some 100,000 objects are parsed and
    built on: none of them forms a cycle, and its passes every 700 allocations took about a
    sixth of the client's time at 10,000 GPUs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_holders(answers: dict[str, list]) -> dict[tuple[int, str], dict[str, list]]:
    """(job, user) -> node -> [GPUs it holds there, how many of them report no utilization,
    the others' sum], from the answers of holder_queries."""
    out: dict[tuple[int, str], dict[str, list]] = {}
    for slot, name in enumerate(("gpus", "unknown", "util")):
        for labels, value in answers.get(name, ()):
            holder = _holder(labels)
            get = labels.get
            node = get("Hostname") or get("hostname") or get("instance")
            if holder is None or not node or value is None:
                continue
            key = (int(holder[0]), holder[1])
            nodes = out.get(key)
            if nodes is None:
                nodes = out[key] = {}
            figures = nodes.get(node)
            if figures is None:
                figures = nodes[node] = [0, 0, 0.0]
            figures[slot] += value
    return out


def _jobs(
    held: dict[tuple[int, str], list[Gpu]],
    held_there: dict[tuple[int, str], dict[str, list]],
    down: set[str],
    last: dict[tuple[int, str], tuple[dict[str, list], Job]],
) -> tuple[tuple[Job, ...], dict[tuple[int, str], tuple[dict[str, list], Job]]]:
    """The scheduler's jobs as the exporters label the GPUs they hold (Slurm job ids; pid 0:
    not a process of this machine): their GPUs one by one on the nodes listed, counted on the
    nodes only summarised; there the job's utilization is the mean over all its GPUs.
    `last`: the previous refresh's jobs held on summarised nodes only, none of them down, each
    with the figures it was built from; a job whose figures are the same is that object again.
    Returns the jobs and this refresh's `last`."""
    jobs = []
    summarised_only = {}
    for key in sorted(held.keys() | held_there.keys()):
        job, user = key
        listed = held.get(key)
        there = held_there.get(key)
        kept = not listed and not down.intersection(there)
        if kept:
            built = last.get(key)
            if built is not None and built[0] == there:
                jobs.append(built[1])
                summarised_only[key] = built
                continue
        gpus = sorted(listed, key=lambda g: (g.node, g.index)) if listed else ()
        elsewhere = (
            sorted([(n, f) for n, f in there.items() if f[0] and n not in down]) if there else ()
        )
        util = None
        if elsewhere:
            known = [g.util for g in gpus if g.util is not None]
            count, total = len(known), sum(known)
            for _, (gpu_count, unknown, util_sum) in elsewhere:
                count += gpu_count - unknown
                total += util_sum
            util = total / count if count else None
        jobs.append(
            Job(
                job,
                0,
                user,
                f"job {job}",
                None,
                tuple([g.location for g in gpus]) if gpus else (),
                util=util,
                summarised=tuple([(n, int(f[0])) for n, f in elsewhere]),
            )
        )
        if kept:
            summarised_only[key] = (there, jobs[-1])
    return tuple(jobs), summarised_only


def _gpu_key(labels: dict) -> tuple[str, str, str] | None:
    """(node, index label, index value) of a per-GPU series; None without a node. NVIDIA's
    `gpu` and AMD's `gpu_id` are kept apart: one node may have both vendors' GPUs."""
    node = labels.get("Hostname") or labels.get("hostname") or labels.get("instance")
    if not node:
        return None
    if "gpu" in labels:
        return node, "gpu", labels["gpu"]
    return node, "gpu_id", labels.get("gpu_id") or "0"


def _host_label(labels: dict) -> str:
    """The label naming a series' node (HOST_LABELS, the first present)."""
    if labels.get("Hostname"):
        return "Hostname"
    return "hostname" if labels.get("hostname") else "instance"


def _unprefixed(name: str) -> str:
    """An AMD metric's name without the exporter's configured prefix."""
    return name if name in METRICS else next((m for m in AMD_NAMES if name.endswith(m)), name)


def _numbered(gpus: dict[tuple[str, str, str], list]) -> dict[tuple[str, str, str], Gpu]:
    """Each GPU (key -> [field -> (rank, value, metric), labels]) as a Gpu, numbered by its
    index label; on a node with both vendors' GPUs, AMD's come after NVIDIA's."""
    after: dict[str, int] = {}  # node -> the first index free after its NVIDIA GPUs
    for node, index_label, value in gpus:
        if index_label == "gpu":
            after[node] = max(after.get(node, 0), _index(value) + 1)
    return {
        key: _gpu(
            key[0], _index(key[2]) + (after.get(key[0], 0) if key[1] == "gpu_id" else 0), *gpu
        )
        for key, gpu in gpus.items()
    }


NO_READING = (0, None, "")


def _gpu(node: str, index: int, slot: dict, labels: dict) -> Gpu:
    get = slot.get
    used, free, total = (
        get(f, NO_READING)[1] for f in ("mem_used_mib", "mem_free_mib", "mem_total_mib")
    )
    if total is None and used is not None and free is not None:
        total = used + free  # FB_TOTAL is not exported by default
    partition = labels.get("gpu_partition_id", "")
    holder = _holder(labels)
    return Gpu(
        node=node,
        index=index,
        model=_model(labels),
        util=get("util", NO_READING)[1],
        mem_util=get("mem_util", NO_READING)[1],
        mem_used_mib=None if used is None else int(used),
        mem_total_mib=None if total is None else int(total),
        temp_c=get("temp_c", NO_READING)[1],
        mem_temp_c=get("mem_temp_c", NO_READING)[1],
        power_w=get("power_w", NO_READING)[1],
        uuid=labels.get("UUID") or labels.get("gpu_uuid") or "",
        edge_temp_c=get("edge_temp_c", NO_READING)[1],
        compute_partition=labels.get("gpu_compute_partition_type", "").upper(),
        memory_partition=labels.get("gpu_memory_partition_type", "").upper(),
        partition_id=int(partition) if partition.isdigit() else None,  # "NA": none
        job_id=int(holder[0]) if holder else None,
    )


def _summary(figures: tuple) -> NodeSummary:
    """A node's summary from its figures: (GPUs, free, mean utilization, memory used, total,
    hottest, power)."""
    gpus, free, util, used, memory, temp, power = figures
    return NodeSummary(
        gpus=gpus,
        free=free,
        lost=0,
        util=util,
        mem_used_mib=None if used is None else int(used),
        mem_total_mib=None if memory is None else int(memory),
        temp_c=temp,
        power_w=power,
    )


def _added(parts: list[tuple]) -> tuple:
    """Several groups' figures as one group's: counts and totals added, the utilization weighed
    by each group's GPUs, the hottest GPU of all."""
    with_util = [(p[0], p[2]) for p in parts if p[2] is not None]
    weight = sum(n for n, _ in with_util)

    def total(index: int) -> float | None:
        known = [p[index] for p in parts if p[index] is not None]
        return sum(known) if known else None

    temps = [p[5] for p in parts if p[5] is not None]
    return (
        sum(p[0] for p in parts),
        sum(p[1] for p in parts),
        sum(n * u for n, u in with_util) / weight if with_util else None,
        total(3),
        total(4),
        max(temps) if temps else None,
        total(6),
    )


def _down_node(name: str, seen: tuple[Gpu, ...] | int) -> Node:
    """A node whose exporter is down or whose series vanished: its GPUs lost, as last seen
    (or as many as its last summary counted)."""
    if isinstance(seen, int):
        return Node(name, (), up=False, summary=NodeSummary(seen, 0, seen, *[None] * 5))
    lost = tuple(Gpu(name, g.index, g.model, lost=True, uuid=g.uuid) for g in seen)
    return Node(name, lost, up=False)
