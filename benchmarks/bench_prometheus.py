"""Prometheus backend refresh against a real local server: 384, 1,000 and 10,000 GPUs served
by a `moai-tui exporter` of a simulated cluster of that size. Queries per refresh and time."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import median, moai_command, p95, record

SIZES = {384: 48, 1000: 125, 10000: 1250}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_gpus(url: str, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"{url}/api/v1/query?query=count(DCGM_FI_DEV_GPU_UTIL)", timeout=5
            ) as answer:
                result = json.load(answer)["data"]["result"]
            if result and int(float(result[0]["value"][1])) == count:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prometheus never held {count} GPUs")


def measure(gpus: int, nodes: int, refreshes: int = 15) -> dict:
    from moai_tui.backends.prometheus import PrometheusBackend
    from moai_tui.config import PrometheusSettings

    work = Path(tempfile.mkdtemp(prefix="moai-prom-"))
    (work / "config").mkdir()
    (work / "config" / "config.toml").write_text(f"[simulator]\nnodes = {nodes}\n")
    env = {
        "MOAI_TUI_CONFIG_DIR": str(work / "config"),
        "MOAI_TUI_SIM_TIME": "1780000000",
        "PATH": "/usr/bin:/bin",
    }
    import os

    exporter_port, prom_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [
            *moai_command(),
            "exporter",
            "--backend",
            "simulator",
            "--listen",
            f"127.0.0.1:{exporter_port}",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
    )
    (work / "prom.yml").write_text(
        # Our Python exporter needs seconds to print 70,000 samples: give it the time.
        "global: {scrape_interval: 10s, scrape_timeout: 10s}\nscrape_configs:\n"
        f"  - job_name: moai\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            shutil.which("prometheus"),
            f"--config.file={work / 'prom.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for_gpus(url, gpus)
        backend = PrometheusBackend.from_config(url, PrometheusSettings(timeout=10.0))
        backend.sample()
        before = backend.client.queries
        times = []
        for _ in range(refreshes):
            started = time.perf_counter()
            snapshot = backend.sample()
            times.append(time.perf_counter() - started)
        assert sum(len(n.gpus) for n in snapshot.nodes) == gpus
        record("prometheus", {"gpus": gpus, "refresh_s": times})
        return {
            "gpus": gpus,
            "queries": (backend.client.queries - before) / refreshes,
            "median": median(times),
            "p95": p95(times),
        }
    finally:
        for process in (prometheus, exporter):
            process.send_signal(signal.SIGTERM)
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def run() -> list[dict]:
    rows = []
    results = [measure(gpus, nodes) for gpus, nodes in SIZES.items()]
    base = results[0]["median"]
    for result in results:
        gpus = result["gpus"]
        rows.append(
            {
                "figure": f"prometheus refresh, {gpus} GPUs (real local server)",
                "value": f"{result['median'] * 1000:.1f} ms (p95 {result['p95'] * 1000:.1f}), "
                f"{result['queries']:g} queries",
                "baseline": "384 GPUs",
                "ratio": f"{result['median'] / base:.2f}x",
                "target": "<= 3 queries, < 100 ms" if gpus == 384 else "",
                "ok": (result["queries"] <= 3 and result["median"] < 0.1) if gpus == 384 else None,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
