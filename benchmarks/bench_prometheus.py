"""Prometheus backend refresh against a real local server: 384, 1,000, 10,000 and 50,000 GPUs of
a simulated cluster, as `moai-tui exporter` serves them, scraped by Debian's Prometheus.

The cluster is scraped as a real one is: an exporter per node (a target each, at its own offset
in the scrape interval), whose figures change at every scrape. Each node's answers are two
scrapes of `moai-tui exporter` (clock frozen 7 s apart), taken beforehand and served in turn by
a process of their own: a Python exporter printing 70,000 samples every scrape would load the
machine the figures are taken on.

Per size, refreshes at the dashboard's pace (one a second) of: `smi`'s path (every node GPU by
GPU); the dashboard's at 200x60 (the nodes view.detail_nodes picks from those its grid shows
GPU by GPU, the rest as Prometheus's per-node summaries, with readings where
view.reading_nodes says), where the nodes no scrape changed since the last refresh are last
refresh's again; the same with nothing kept (every node's figures new: a first refresh); and
with `--before REV` the backend as it was at that git revision, interleaved in each run. Each
refresh: its wall time, moai-tui's own share (the wall time beyond waiting for answers, and
this process's CPU), and the Prometheus server's CPU (from /proc). Server and client share this
machine's cores, each slowing the other; so the dashboard's refreshes are also timed on the
answers they got, replayed once Prometheus is stopped: moai-tui's work alone, as where
Prometheus runs on a machine of its own.

    nice -n 10 python3 -m benchmarks.bench_prometheus [--before REV] [--sizes 384,1000]
"""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from benchmarks.common import RAW, median, moai_command, no_baseline, p95, record, write_section
from moai_tui.view import detail_nodes, plural, reading_nodes

ROOT = Path(__file__).resolve().parents[1]
SIZES = {384: 48, 1000: 125, 10000: 1250, 50000: 6250}
# The dashboard at 200x60 (tui/app.py, widgets.py): its grid is 160 columns beside the side
# panel; 1,250 nodes of 8 GPUs take its dense mode (no figures beside a node), 16 nodes a row,
# and 34 rows fit beside one device and the jobs table. Smaller clusters fit whole, with figures.
DASHBOARD_NODES = 16 * 34
ROW_PREFIX = "| prometheus refresh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Two scrapes of the simulated cluster, 7 s apart: what each node's exporter answers in turn.
SCRAPED_AT = (1780000000, 1780000007)
REFRESH_INTERVAL = 1.0  # the dashboard's default (config.py)
DASHBOARDS = ("dashboard", "first")  # the variants the goals are for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def natural(name: str) -> tuple:
    digits = "".join(c for c in name if c.isdigit())
    return (name.rstrip("0123456789"), int(digits) if digits else 0)


def exporter_answer(nodes: int, work: Path, at: int) -> bytes:
    """One scrape of `moai-tui exporter` over a simulated cluster of `nodes` nodes, its clock
    frozen at `at`."""
    (work / "config").mkdir(exist_ok=True)
    (work / "config" / "config.toml").write_text(f"[simulator]\nnodes = {nodes}\n")
    env = {**os.environ, "MOAI_TUI_CONFIG_DIR": str(work / "config"), "MOAI_TUI_SIM_TIME": str(at)}
    port = free_port()
    listen = ["--listen", f"127.0.0.1:{port}"]
    command = [*moai_command(), "exporter", "--backend", "simulator", *listen]
    exporter = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=300) as r:
                    return r.read()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(10)


def by_node(body: bytes) -> dict[str, bytes]:
    """An exporter's answer split by the node each sample names (Hostname): what each node's
    own exporter would answer. HELP and TYPE lines are left out (the samples stay gauges)."""
    out: dict[str, list[bytes]] = {}
    for line in body.splitlines():
        if line and not line.startswith(b"#"):
            node = line.split(b'Hostname="', 1)[1].split(b'"', 1)[0].decode()
            out.setdefault(node, []).append(line)
    return {node: b"\n".join(lines) + b"\n" for node, lines in out.items()}


def serve_nodes(port: int, scrapes: tuple[dict[str, bytes], ...]) -> None:
    """Every node's exporter on one port, /metrics?node=NAME (run in a process of its own, so
    that its work is not counted as moai-tui's): each scrape of a node answers the next of
    `scrapes`, in turn, so that its figures change at every scrape as a live cluster's do."""
    served: dict[str, int] = {}

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            node = self.path.partition("node=")[2]
            turn = served.get(node, 0)
            served[node] = turn + 1
            body = scrapes[turn % len(scrapes)].get(node, b"")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Metrics).serve_forever()


def prometheus_config(port: int, nodes: Iterable[str], interval: str) -> str:
    """A target per node, as a cluster runs an exporter on each: labelled with its node's own
    address, as Prometheus would label it, and scraped at its own offset in the interval."""
    targets = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"__param_node": n, "instance": f"{n}:9400"}}
        for n in nodes
    ]
    scrape = {"job_name": "moai", "static_configs": targets}
    timing = {"scrape_interval": interval, "scrape_timeout": interval}
    return json.dumps({"global": timing, "scrape_configs": [scrape]})


def wait_for_gpus(url: str, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"{url}/api/v1/query?query=count(DCGM_FI_DEV_GPU_UTIL)", timeout=30
            ) as answer:
                result = json.load(answer)["data"]["result"]
            if result and int(float(result[0]["value"][1])) == count:
                return
        except OSError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"Prometheus never held {count} GPUs")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def backend_before(revision: str):
    """The Prometheus backend module as it was at a git revision (a module of its own)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:moai_tui/backends/prometheus.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="moai-before-")) / "prometheus_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("prometheus_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Waits:
    """Seconds a client spent waiting for answers: the new client counts them itself
    (waited_s), an old one is timed around its HTTP calls."""

    def __init__(self, client):
        self.client = client
        if not hasattr(client, "waited_s"):
            client.waited_s = 0.0
            ask = client.get

            def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return ask(*args, **kwargs)
                finally:
                    client.waited_s += time.perf_counter() - started

            client.get = timed

    def __call__(self) -> float:
        return self.client.waited_s


def measure(gpus: int, nodes: int, runs: int, refreshes: int, before: str | None) -> list[dict]:
    from moai_tui.backends.prometheus import PrometheusBackend, PrometheusClient

    work = Path(tempfile.mkdtemp(prefix="moai-prom-bench-"))
    scrapes = tuple(by_node(exporter_answer(nodes, work, at)) for at in SCRAPED_AT)
    exporter_port = free_port()
    exporters = multiprocessing.get_context("fork").Process(
        target=serve_nodes, args=(exporter_port, scrapes), daemon=True
    )
    exporters.start()
    interval = "10s" if gpus <= 10000 else "60s"  # a 50,000-GPU scrape takes seconds to ingest
    port = free_port()
    (work / "prom.yml").write_text(prometheus_config(exporter_port, scrapes[0], interval))
    prometheus = subprocess.Popen(
        [
            shutil.which("prometheus"),
            f"--config.file={work / 'prom.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_gpus(url, gpus)
        timeout = max(10.0, gpus / 500)
        variants = {}
        if before:
            old = backend_before(before)
            variants["before"] = old.PrometheusBackend(old.PrometheusClient(url, timeout=timeout))
        variants["smi"] = PrometheusBackend(PrometheusClient(url, timeout=timeout))
        dashboard = PrometheusBackend(PrometheusClient(url, timeout=timeout))
        nodes = sorted(dashboard.sample().nodes, key=lambda n: natural(n.name))
        on_screen = nodes[:DASHBOARD_NODES]
        dense = len(nodes) > DASHBOARD_NODES
        shown = detail_nodes(on_screen, cursor=nodes[0])
        readings = reading_nodes(on_screen, nodes[0], not dense, "name")
        dashboard.set_detail(shown, readings)
        # Nodes drawn from summaries that carry their memory, temperature and power.
        every = {node.name for node in nodes}
        with_readings = len((every if readings is None else readings) - shown)
        variants["dashboard"] = dashboard
        if len(shown) < len(nodes):  # some nodes summarised
            # The same refresh with nothing kept from the last: every node's figures new, as on
            # a first refresh, or where one exporter serves the whole cluster (scraped at once).
            variants["first"] = PrometheusBackend(PrometheusClient(url, timeout=timeout))
            variants["first"].set_detail(shown, readings)
        waits = {name: Waits(b.client) for name, b in variants.items()}
        for backend in variants.values():
            backend.sample()  # connections open, labels learnt
        answers = recording(dashboard)
        out = []
        next_refresh = time.monotonic()
        for run in range(runs):
            for refresh in range(refreshes):
                # At the dashboard's pace: between two refreshes, the scrapes of a second land.
                time.sleep(max(0.0, next_refresh - time.monotonic()))
                next_refresh = time.monotonic() + REFRESH_INTERVAL
                answers.append({})
                # Each variant in turn first: none always follows smi's load on the server.
                order = list(variants.items())
                turn = (run * refreshes + refresh) % len(order)
                for name, backend in order[turn:] + order[:turn]:
                    if name == "first":
                        backend._summarised.clear()  # what the last refresh built
                        backend._jobs_there.clear()
                    waited, server_cpu = waits[name](), cpu_seconds(prometheus.pid)
                    wall, cpu = time.perf_counter(), time.process_time()
                    snapshot = backend.sample()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    out.append(
                        {
                            "variant": name,
                            "run": run,
                            "wall": wall,
                            "own": wall - (waits[name]() - waited),
                            "cpu": cpu,
                            "server_cpu": cpu_seconds(prometheus.pid) - server_cpu,
                            "gpus": sum(n.gpu_count for n in snapshot.nodes),
                            "listed": sum(len(n.gpus) for n in snapshot.nodes),
                        }
                    )
    finally:
        prometheus.send_signal(signal.SIGTERM)
        prometheus.wait(30)
        exporters.terminate()
        exporters.join(10)
        shutil.rmtree(work, ignore_errors=True)
    out += replayed(dashboard, answers, runs, refreshes)
    for entry in out:
        assert entry["gpus"] == gpus, entry
    counts = {"shown": len(shown), "with_readings": with_readings}
    record("prometheus", {"gpus": gpus, **counts, "refreshes": out})
    return [{**entry, "size": gpus, **counts} for entry in out]


def recording(backend) -> list[dict[str, bytes]]:
    """The answers the backend gets from now on, refresh by refresh, by query (the caller
    appends a refresh's dict before it asks)."""
    answers: list[dict[str, bytes]] = []
    ask = backend.client._ask

    def keep(promql: str, what: str) -> bytes:
        answers[-1][promql] = ask(promql, what)
        return answers[-1][promql]

    backend.client._ask = keep
    return answers


def replayed(backend, answers: list[dict[str, bytes]], runs: int, refreshes: int) -> list[dict]:
    """The dashboard's refreshes again, on the answers they got, in turn, with Prometheus
    stopped: moai-tui's own work alone, without a server beside it on this machine's cores (on
    a cluster, Prometheus runs elsewhere)."""
    turn = iter(answers)
    out = []
    for run in range(runs):
        for _ in range(refreshes):
            refresh = next(turn)
            backend.client._ask = lambda promql, what, refresh=refresh: refresh[promql]
            wall, cpu = time.perf_counter(), time.process_time()
            snapshot = backend.sample()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            gpus = sum(n.gpu_count for n in snapshot.nodes)
            out.append({"variant": "replayed", "run": run, "wall": wall, "cpu": cpu, "gpus": gpus})
    return out


def rows(entries: list[dict]) -> list[dict]:
    out = []
    gpus = entries[0]["size"]
    shown, with_readings = entries[0]["shown"], entries[0]["with_readings"]

    def of(variant: str) -> list[dict]:
        return [e for e in entries if e["variant"] == variant]

    def spread(chosen: list[dict], key: str) -> tuple[float, str]:
        runs = sorted({e["run"] for e in chosen})
        medians = [median([e[key] for e in chosen if e["run"] == r]) * 1000 for r in runs]
        every = [e[key] * 1000 for e in chosen]
        middle = statistics.median(medians)
        text = f"{middle:.0f} ms (runs {min(medians):.0f}-{max(medians):.0f}, p95 {p95(every):.0f})"
        return middle, text

    goal = 100 if gpus <= 1000 else 500 if gpus <= 10000 else None
    # Each row beside the old code's refresh where it was measured, else beside smi's.
    base = "before" if of("before") else "smi"
    base_wall, base_text = spread(of(base), "wall")
    for variant, what in (
        (
            "dashboard",
            f"dashboard 200x60, {plural(shown, 'node')} GPU by GPU, "
            f"{plural(with_readings, 'summarised node')} with readings",
        ),
        ("first", "dashboard 200x60, every node's figures new (a first refresh)"),
        ("smi", "smi (every GPU)"),
        ("before", "before (every GPU, the old queries)"),
    ):
        chosen = of(variant)
        if not chosen:
            continue
        wall, wall_text = spread(chosen, "wall")
        own, own_text = spread(chosen, "own")
        _, cpu_text = spread(chosen, "cpu")
        _, server_text = spread(chosen, "server_cpu")
        beside = (
            no_baseline()
            if variant == base
            else {"baseline": f"{base}: {base_text}", "ratio": f"{wall / base_wall:.2f}x"}
        )
        out.append(
            {
                "figure": f"prometheus refresh, {gpus} GPUs, {what}: wall",
                "value": wall_text,
                **beside,
                "target": f"< {goal} ms" if goal and variant in DASHBOARDS else "",
                "ok": wall < goal if goal and variant in DASHBOARDS else None,
            }
        )
        out.append(
            {
                "figure": f"prometheus refresh, {gpus} GPUs, {what}: moai-tui's share",
                "value": f"own wall {own_text}, {100 * own / wall:.0f} % of it; own CPU {cpu_text}",
                "baseline": f"Prometheus CPU {server_text}",
                "ratio": "",
                "target": "< 20 %" if variant in DASHBOARDS else "",
                "ok": own < 0.2 * wall if variant in DASHBOARDS else None,
            }
        )
        if variant == "dashboard" and of("replayed"):
            work, work_text = spread(of("replayed"), "wall")
            _, cpu_text = spread(of("replayed"), "cpu")
            out.append(
                {
                    "figure": f"prometheus refresh, {gpus} GPUs, {what}: moai-tui's work alone "
                    "(its answers replayed in turn, Prometheus stopped)",
                    "value": f"{work_text}, {100 * work / wall:.0f} % of the wall above; "
                    f"CPU {cpu_text}",
                    **no_baseline(),
                    "target": "",
                    "ok": None,
                }
            )
    return out


PLAN = {384: (5, 10), 1000: (5, 10), 10000: (3, 5), 50000: (2, 2)}  # runs, refreshes each


def run(sizes=(384, 1000, 10000), before: str | None = None) -> list[dict]:
    out = []
    for gpus in sizes:
        runs, refreshes = PLAN[gpus]
        print(f"prometheus benchmark: {gpus} GPUs ...", file=sys.stderr, flush=True)
        out += rows(measure(gpus, SIZES[gpus], runs, refreshes, before))
    return out


def update_raw(
    entries: list[dict],
    before: str | None,
    path: Path = ROOT / "benchmarks" / "raw" / "prometheus.json",
) -> None:
    """Rewrite the raw measurements as update_results does the table: the sizes measured now
    replace theirs, the other sizes stay as an earlier run left them."""
    old = json.loads(path.read_text()) if path.exists() else {}
    sizes = {entry["gpus"] for entry in entries}
    kept = [
        {"before": old.get("before"), **entry}  # files from before `before` was per size
        for entry in old.get("prometheus", [])
        if entry["gpus"] not in sizes
    ]
    new = [{"before": before, **entry} for entry in entries]
    every = sorted(kept + new, key=lambda entry: entry["gpus"])
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"prometheus": every}, indent=1) + "\n")


SECTION = "benchmarks.bench_prometheus"


def update_results(
    new_rows: list[dict],
    sizes,
    before: str | None,
    path: Path = ROOT / "benchmarks" / "results.md",
) -> None:
    """Rewrite this script's section of results.md: the rows of the sizes measured now, and
    those of other sizes as an earlier run left them, ordered by size."""
    from benchmarks.run import table

    old = path.read_text() if path.exists() else ""
    begin, end = f"<!-- begin {SECTION} -->", f"<!-- end {SECTION} -->"
    section = old.split(begin, 1)[1].split(end, 1)[0] if begin in old else ""
    stale = tuple(f"{ROW_PREFIX}, {gpus} GPUs" for gpus in sizes)
    kept = [line for line in section.splitlines() if line.startswith(ROW_PREFIX)]
    rows = [line for line in kept if not line.startswith(stale)]
    rows += table(new_rows).splitlines()[2:]
    rows.sort(key=lambda line: int(line[len(ROW_PREFIX) + 2 :].split(" ", 1)[0]))
    command = f"--sizes {','.join(str(gpus) for gpus in sizes)}"
    command += f" --before {before}" if before else ""
    runs = [line for line in section.splitlines() if line.startswith("- ")]
    runs = [line for line in runs if not line.startswith(f"- `{command}`")]
    runs.append(
        f"- `{command}`: {time.strftime('%Y-%m-%d %H:%M')}, niced, 2-core VM shared with other "
        f"work (load {os.getloadavg()[0]:.1f} at the end)"
    )
    text = "\n".join(
        [
            "## `python3 -m benchmarks.bench_prometheus`",
            "",
            "Each refresh's wall time; moai-tui's own share (its wall time beyond waiting for "
            "answers, and this process's CPU); Prometheus's CPU (/proc). Median of the runs' "
            "medians, the runs' range, p95 of all refreshes. `before`: the backend at the "
            "revision given to --before. An exporter per node, scraped each at its own offset, "
            "whose figures change at every scrape; a refresh a second, each variant first in "
            "turn. Prometheus and moai-tui share this VM's 2 cores, each slowing the other: the "
            "dashboard's work alone is also timed on the answers it got, replayed in turn once "
            "Prometheus is stopped.",
            "",
            *table([]).splitlines()[:2],
            *rows,
            "",
            *runs,
        ]
    )
    write_section(path, SECTION, text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision whose backend to measure beside")
    parser.add_argument("--sizes", default="384,1000,10000", help="GPUs, comma-separated")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    measured = run(sizes, args.before)
    from benchmarks.run import table

    print(table(measured))
    update_results(measured, sizes, args.before)
    update_raw(RAW["prometheus"], args.before)
