"""`moai-tui exporter`: what a backend samples, served as Prometheus metrics under
dcgm-exporter's names and labels, so a node without dcgm-exporter (or the simulator) can feed a
real Prometheus. With `--node`, one node of the cluster: several exporters make a whole cluster.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from moai_tui.errors import UsageError
from moai_tui.model import ClusterSnapshot
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
LABELS = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]


class SnapshotCollector(Collector):
    """Samples the backend on every scrape (Prometheus sets the pace)."""

    def __init__(self, sample: Callable[[], ClusterSnapshot], node: str | None):
        self.sample = sample
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.sample()
        nodes = [n for n in snapshot.nodes if self.node is None or n.name == self.node]
        for name, text, read in METRICS:
            family = GaugeMetricFamily(name, text, labels=LABELS)
            for node in nodes:
                for gpu in node.gpus:
                    value = None if gpu.lost else read(gpu)
                    if value is not None:
                        family.add_metric(
                            [
                                str(gpu.index),
                                f"GPU-{node.name}-{gpu.index:02d}",
                                "",
                                f"nvidia{gpu.index}",
                                gpu.model,
                                node.name,
                                snapshot.version_current,
                            ],
                            float(value),
                        )
            yield family


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not is_number(port) or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9400")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(
    sample: Callable[[], ClusterSnapshot],
    listen: str,
    node: str | None,
    announce: Callable[[str], None],
) -> int:
    from prometheus_client import start_http_server

    host, port = parse_listen(listen)
    if node is not None and node not in [n.name for n in sample().nodes]:
        raise UsageError(f"--node {node!r} is not a node of this backend's cluster")
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(sample, node))
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    announce(
        f"Serving {'node ' + node if node else 'all nodes'} as dcgm-exporter metrics on "
        f"http://{host}:{server.server_port}/metrics"
    )
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0
