"""`moai-tui exporter`: what a backend samples, served as Prometheus metrics under
dcgm-exporter's names and labels, or AMD device-metrics-exporter's (`--names amd`, the default on
the amdsmi backend), so a node without those exporters (or the simulator) can feed a real
Prometheus. With `--node`, one node of the cluster: several exporters make a whole cluster.

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
from moai_tui.model import AMD_DRIVER, NVIDIA_DRIVER, ClusterSnapshot, Gpu, Job, Node
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


def _free_mib(g: Gpu) -> int | None:
    if g.mem_total_mib is None or g.mem_used_mib is None:
        return None
    return g.mem_total_mib - g.mem_used_mib


# device-metrics-exporter's names (its VRAM "MB" are MiB, as amdsmi gives them) and the labels
# it always sets, with gpu_uuid and card_series (opt-in there) and its Slurm job labels.
AMD_METRICS: tuple[tuple[str, str, Callable], ...] = (
    ("gpu_gfx_activity", "Graphics engine usage (0 - 100)", lambda g: g.util),
    ("gpu_umc_activity", "Memory engine usage (0 - 100)", lambda g: g.mem_util),
    ("gpu_used_vram", "Total VRAM memory used in MB", lambda g: g.mem_used_mib),
    ("gpu_free_vram", "Total VRAM memory free in MB", _free_mib),
    ("gpu_total_vram", "Total VRAM available in MB", lambda g: g.mem_total_mib),
    ("gpu_junction_temperature", "Hotspot (junction) temperature in Celsius", lambda g: g.temp_c),
    ("gpu_edge_temperature", "Edge temperature in Celsius", lambda g: g.edge_temp_c),
    ("gpu_memory_temperature", "Memory temperature in Celsius", lambda g: g.mem_temp_c),
    ("gpu_package_power", "Current socket power in Watts", lambda g: g.power_w),
)
AMD_LABELS = [
    "gpu_id",
    "gpu_uuid",
    "serial_number",
    "card_series",
    "card_model",
    "driver_version",
    "hostname",
    "gpu_partition_id",
    "gpu_compute_partition_type",
    "gpu_memory_partition_type",
    "job_id",
    "job_user",
]


def dcgm_labels(node: Node, gpu: Gpu, driver: str, jobs: list[Job]) -> list[str]:
    return [
        str(gpu.index),
        gpu.uuid,
        "",
        f"nvidia{gpu.index}",
        gpu.model,
        node.name,
        driver,
        ",".join(str(job.job_id) for job in jobs),
        ",".join(dict.fromkeys(job.user for job in jobs)),
    ]


def amd_labels(node: Node, gpu: Gpu, driver: str, jobs: list[Job]) -> list[str]:
    return [
        str(gpu.index),
        gpu.uuid,
        "",
        gpu.model,
        gpu.model,  # the board's part number is not read: the exporter's own fallback
        driver,
        node.name,
        "" if gpu.partition_id is None else str(gpu.partition_id),
        gpu.compute_partition.lower(),  # the exporter writes them lower-case: "cpx", "nps1"
        gpu.memory_partition.lower(),
        ",".join(str(job.job_id) for job in jobs),
        ",".join(dict.fromkeys(job.user for job in jobs)),
    ]


# --names -> (metrics, label names, label values of a GPU, the platform whose driver it names)
NAMINGS = {
    "dcgm": (METRICS, LABELS, dcgm_labels, NVIDIA_DRIVER),
    "amd": (AMD_METRICS, AMD_LABELS, amd_labels, AMD_DRIVER),
}


class SnapshotCollector(Collector):
    """Samples on every scrape (Prometheus sets the pace); `sample` gives a cleaned snapshot."""

    def __init__(
        self, sample: Callable[[], ClusterSnapshot], node: str | None, names: str = "dcgm"
    ):
        self.sample = sample
        self.node = node
        self.names = names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.sample()
        metrics, label_names, label_values, platform = NAMINGS[self.names]
        nodes = [n for n in snapshot.nodes if self.node is None or n.name == self.node]
        holders = _holders(snapshot)
        driver = snapshot.version_current if snapshot.platform == platform else ""
        for name, text, read in metrics:
            family = GaugeMetricFamily(name, text, labels=label_names)
            for node in nodes:
                for gpu in node.gpus:
                    value = None if gpu.lost else read(gpu)
                    if value is None:
                        continue
                    jobs = holders.get(gpu.location, [])
                    family.add_metric(label_values(node, gpu, driver, jobs), float(value))
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
    names: str = "dcgm",
) -> int:
    host, port = parse_listen(listen)
    if node is not None and node not in [n.name for n in sample().nodes]:
        raise UsageError(f"--node {node!r} is not a node of this backend's cluster")
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(sample, node, names))
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
        f"Serving {'node ' + node if node else 'all nodes'} as "
        f"{'device-metrics-exporter' if names == 'amd' else 'dcgm-exporter'} metrics on "
        f"http://{host}:{server.server_port}{METRICS_PATH}"
    )
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0
