"""`moai-tui exporter`: what a backend samples, served as Prometheus metrics under
dcgm-exporter's names and labels, so a node without dcgm-exporter (or the simulator) can feed a
real Prometheus. With `--node`, one node of the cluster: several exporters make a whole cluster.

Served at /metrics only (404 elsewhere). What it serves comes through the one pipeline
(pipeline.take_sample, which `cmd_exporter` hands in): cleaned, so an impossible reading is
left out, and one backend call at a time however many scrapes overlap. `UUID` is the GPU's own
where the backend knows it (NVML), empty otherwise; `pci_bus_id` is empty (no backend reads
it). Who holds a GPU goes into `hpc_job` (dcgm-exporter's label for it) and `hpc_user`, so
"who uses the GPUs" survives into Grafana; one series per GPU, so sums never count a shared
GPU twice.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from moai_tui.errors import UsageError
from moai_tui.model import NVIDIA_DRIVER, ClusterSnapshot, Job
from moai_tui.parsing import is_number

# (dcgm-exporter name, help, value of a GPU); None values are left out, as dcgm-exporter does.
METRICS: tuple[tuple[str, str, Callable], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: g.util),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", lambda g: g.mem_util),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda g: g.mem_used_mib),
    (
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        lambda g: (
            None
            if g.mem_total_mib is None or g.mem_used_mib is None
            else g.mem_total_mib - g.mem_used_mib
        ),
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda g: g.temp_c),
    ("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", lambda g: g.mem_temp_c),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda g: g.power_w),
)
LABELS = [
    "gpu",
    "UUID",
    "pci_bus_id",
    "device",
    "modelName",
    "Hostname",
    "DCGM_FI_DRIVER_VERSION",
    "hpc_job",
    "hpc_user",
]
METRICS_PATH = "/metrics"


class SnapshotCollector(Collector):
    """Samples on every scrape (Prometheus sets the pace); `sample` gives a cleaned snapshot."""

    def __init__(self, sample: Callable[[], ClusterSnapshot], node: str | None):
        self.sample = sample
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.sample()
        nodes = [n for n in snapshot.nodes if self.node is None or n.name == self.node]
        holders = _holders(snapshot)
        driver = snapshot.version_current if snapshot.platform == NVIDIA_DRIVER else ""
        for name, text, read in METRICS:
            family = GaugeMetricFamily(name, text, labels=LABELS)
            for node in nodes:
                for gpu in node.gpus:
                    value = None if gpu.lost else read(gpu)
                    if value is None:
                        continue
                    jobs = holders.get(gpu.location, [])
                    family.add_metric(
                        [
                            str(gpu.index),
                            gpu.uuid,
                            "",
                            f"nvidia{gpu.index}",
                            gpu.model,
                            node.name,
                            driver,
                            ",".join(str(job.job_id) for job in jobs),
                            ",".join(dict.fromkeys(job.user for job in jobs)),
                        ],
                        float(value),
                    )
            yield family


def _holders(snapshot: ClusterSnapshot) -> dict[str, list[Job]]:
    """GPU location -> the jobs running on it (several processes may share one GPU)."""
    holders: dict[str, list[Job]] = {}
    for job in snapshot.jobs:
        if not job.waiting:
            for location in job.gpus:
                holders.setdefault(location, []).append(job)
    return holders


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not is_number(port) or not 0 <= int(port) < 65536:  # 0: any free port
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9400")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds up the exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # one line per scrape on stderr is noise


def metrics_only(app: Callable) -> Callable:
    """The WSGI app answering /metrics, and 404 anywhere else (as dcgm-exporter does)."""

    def route(environ, start_response):
        if environ.get("PATH_INFO") == METRICS_PATH:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"404 Not Found: the metrics are at {METRICS_PATH}\n".encode()]

    return route


def serve(
    sample: Callable[[], ClusterSnapshot],
    listen: str,
    node: str | None,
    announce: Callable[[str], None],
) -> int:
    host, port = parse_listen(listen)
    if node is not None and node not in [n.name for n in sample().nodes]:
        raise UsageError(f"--node {node!r} is not a node of this backend's cluster")
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(sample, node))
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("Server", (_Server,), {"address_family": family})
        server = make_server(
            host, port, metrics_only(make_wsgi_app(registry)), server_class, _QuietHandler
        )
    except OSError as error:
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    threading.Thread(target=server.serve_forever, name="exporter", daemon=True).start()
    announce(
        f"Serving {'node ' + node if node else 'all nodes'} as dcgm-exporter metrics on "
        f"http://{host}:{server.server_port}{METRICS_PATH}"
    )
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0
