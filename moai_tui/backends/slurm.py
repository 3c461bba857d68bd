"""Backend `slurm`: a Slurm cluster as one accelerator, read through Slurm's own commands.

Slurm says who holds what: the nodes and their GPUs (`scontrol show nodes`), every job that holds
or waits for GPUs, of every user, with the GPU indices it holds on each node and why a waiting
job waits (`squeue`). Readings (utilization, memory, temperature, power) are not Slurm's to give:
they come from a Prometheus backend when one is configured, joined on (node, GPU index), and are
unknown otherwise.

A refresh is two commands whatever the cluster's size, run side by side, each with a timeout;
slurmctld is asked at most once per `interval` (sites ask users not to poll it hard), and a
failure backs off like the Prometheus backend. Which commands depends on the installed version,
read once with `scontrol --version`: JSON pinned to a data_parser from 23.11, plain JSON for
22.05 and 23.02, text (`scontrol ... -o`) for older versions or when JSON fails.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from moai_tui.backends import slurm_parse as parse
from moai_tui.catalog import Catalog
from moai_tui.config import SlurmSettings
from moai_tui.errors import BackendError
from moai_tui.model import ClusterSnapshot, Flavor, Gpu, Job, JobRequest, Node, NodeSummary

T = TypeVar("T")

STATES = "--states=PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING,RESIZING,STOPPED"
TEXT_NODES = ("scontrol", "show", "nodes", "-o", "-d")
TEXT_JOBS = ("scontrol", "-d", "show", "job", "-o")
# The newest data_parser each release ships (its CLI default); releases keep the last three or
# four, so a release newer than this table still knows the newest one here.
PARSERS = (
    ((26, 5), "v0.0.45"),
    ((25, 11), "v0.0.44"),
    ((25, 5), "v0.0.43"),
    ((24, 11), "v0.0.42"),
    ((24, 5), "v0.0.41"),
    ((23, 11), "v0.0.40"),
)
# What a client prints when slurmctld does not answer: a backend error, not a format problem.
UNREACHABLE = ("Unable to contact", "timed out", "Connection refused", "Zero Bytes")
# Memory a GPU model reports (MiB), for a catalog derived from Slurm without metrics: the
# NVML totals of those models (H100 and H200 from tests/fixtures/nvml), MoAI's MI250 die.
MODEL_MIB = (
    ("h200", 143771),
    ("h100", 81559),
    ("a100", 81920),
    ("mi300", 196592),
    ("mi250", 65520),
)
REQUEST_KIND = "slurm"  # state records of `moai-tui run` jobs on Slurm


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`slurm 23.11.4` / `slurm-wlm 22.05.8` -> (23, 11, 4)."""
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(p) for p in match.groups()) if match else None  # type: ignore[return-value]


@dataclass(frozen=True)
class Plan:
    """The two commands of a refresh and how to read their answers."""

    nodes: tuple[str, ...]
    jobs: tuple[str, ...]
    nodes_json: bool
    jobs_json: bool
    parser: str | None  # the pinned data_parser, if any

    @property
    def text(self) -> bool:
        return not (self.nodes_json or self.jobs_json)


TEXT_PLAN = Plan(TEXT_NODES, TEXT_JOBS, False, False, None)


def plan_for(version: tuple[int, int, int] | None, pin: bool = True) -> Plan:
    """The cheapest faithful commands for a Slurm version (None: not known, text)."""
    if version is None or version < (22, 5, 0):
        return TEXT_PLAN  # 21.08's JSON predates gres_detail in squeue: text says more
    if version >= (23, 11, 0):
        parser = next((p for since, p in PARSERS if version[:2] >= since), PARSERS[-1][1])
        option = f"--json={parser}" if pin else "--json"
        return Plan(
            ("scontrol", option, "show", "nodes"),
            ("squeue", option, STATES),
            True,
            True,
            parser if pin else None,
        )
    if version >= (23, 2, 0):
        # 23.02.0-2's squeue --json leaves gres_detail out (fixed in 23.02.3): text for jobs.
        jobs_json = version >= (23, 2, 3)
        jobs = ("squeue", "--json", STATES) if jobs_json else TEXT_JOBS
        return Plan(("scontrol", "--json", "show", "nodes"), jobs, True, jobs_json, None)
    return Plan(("sinfo", "--json"), ("squeue", "--json", STATES), True, True, None)


def fallback(plan: Plan) -> Plan:
    """One step down when an answer is refused or unreadable: unpinned JSON, then text."""
    if plan.parser is not None:
        return Plan(
            tuple(a if not a.startswith("--json=") else "--json" for a in plan.nodes),
            tuple(a if not a.startswith("--json=") else "--json" for a in plan.jobs),
            True,
            True,
            None,
        )
    return TEXT_PLAN


class Commands:
    """Runs Slurm's client commands side by side, each bounded by a timeout; counts them."""

    def __init__(self, timeout: float, environ: dict | None = None):
        self.timeout = timeout
        # Times as epoch seconds in text answers, whatever the site's format.
        self.env = {**(environ if environ is not None else os.environ), "SLURM_TIME_FORMAT": "%s"}
        self.count = 0

    def run(self, argvs: Sequence[Sequence[str]]) -> list[tuple[int, str, str]]:
        processes = []
        try:
            for argv in argvs:
                self.count += 1
                processes.append(
                    subprocess.Popen(
                        list(argv),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env=self.env,
                        text=True,
                        start_new_session=True,  # a Ctrl-C in the terminal is ours to handle
                    )
                )
        except OSError as error:
            _kill(processes)
            raise BackendError(f"slurm: cannot run {argvs[len(processes)][0]}: {error}") from None
        deadline = time.monotonic() + self.timeout
        results = []
        for argv, process in zip(argvs, processes, strict=True):
            try:
                out, err = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill(processes)
                raise BackendError(
                    f"slurm: {' '.join(argv[:2])} did not answer within {self.timeout:g} s "
                    "(is slurmctld up?)"
                ) from None
            results.append((process.returncode, out, err))
        return results


def _kill(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


@dataclass(frozen=True)
class Allocation:
    """One poll of slurmctld: its nodes and jobs, and when it was taken (monotonic)."""

    nodes: tuple[parse.SlurmNode, ...]
    jobs: tuple[parse.SlurmJob, ...]
    taken: float
    release: str
    cluster: str


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


class SlurmBackend:
    name = "slurm"
    notice: str | None = None
    visible_devices_env = None  # srun sets CUDA_VISIBLE_DEVICES on each node itself
    scheduler = "slurm"

    def __init__(
        self,
        settings: SlurmSettings | None = None,
        metrics=None,
        commands: Commands | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.settings = settings or SlurmSettings()
        self.metrics = metrics  # a PrometheusBackend, or None: readings unknown
        self.commands = commands or Commands(self.settings.timeout)
        self.clock = clock
        self.wall = wall
        self.user = getpass.getuser()
        self.version = self._version()
        self.plan = plan_for(self.version)
        self.metrics_error: str | None = None
        self._metrics_nodes: list[str] = []  # the metrics' node names, as last seen
        # The nodes shown GPU by GPU and those whose readings are shown (None: all), what the
        # metrics were last told of them (under their names), the metrics' summaries of the rest.
        self.detail: frozenset[str] | None = None
        self.shown_readings: frozenset[str] | None = None
        self._told: tuple = (None, None)
        self.summaries: dict[str, NodeSummary] = {}
        # Job id -> its utilization where the metrics summarised its nodes (their job labels).
        self.job_utils: dict[int, float] = {}
        self._last: Allocation | None = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._error = ""

    def _version(self) -> tuple[int, int, int] | None:
        """Read once, locally (no slurmctld involved): it decides the commands."""
        ((code, out, err),) = self.commands.run([("scontrol", "--version")])
        if code != 0:
            raise BackendError(f"slurm: scontrol --version failed: {first_line(err)}")
        return parse_version(out)

    # Polling -------------------------------------------------------------------------------
    def allocation(self, requests: Sequence[JobRequest] = ()) -> Allocation:
        """The last poll while it is younger than the interval, else a new one. A job of the
        user's that the last poll has not seen yet (just submitted) asks sooner, once a second
        at most."""
        now = self.clock()
        last = self._last
        if last is not None:
            age = now - last.taken
            seen = {job.job_id for job in last.jobs}
            unseen = any(
                r.kind == REQUEST_KIND and r.job_id > 0 and r.job_id not in seen for r in requests
            )
            if age < self.settings.interval and not (unseen and age >= 1.0):
                return last
        if now < self._retry_at:
            raise BackendError(f"{self._error} (retrying in {self._retry_at - now:.0f} s)")
        try:
            self._last = self._poll(now)
        except BackendError as error:
            self._backoff = min(30.0, max(self.settings.interval, self._backoff * 2))
            self._retry_at = now + self._backoff
            self._error = str(error)
            raise
        self._backoff = 0.0
        return self._last

    def _poll(self, now: float) -> Allocation:
        for _ in range(3):  # at most two steps down: unpinned JSON, then text
            answers = self.commands.run([self.plan.nodes, self.plan.jobs])
            try:
                return self._read(answers, now)
            except _Unsupported as why:
                if self.plan.text:
                    raise BackendError(f"slurm: {why}") from None
                self.plan = fallback(self.plan)
                self.notice = f"slurm: {why}; reading Slurm's text output instead"
        raise BackendError("slurm: no command format worked")  # pragma: no cover

    def _read(self, answers: list[tuple[int, str, str]], now: float) -> Allocation:
        plan = self.plan
        (node_code, node_out, node_err), (job_code, job_out, job_err) = answers
        for argv, code, err in ((plan.nodes, node_code, node_err), (plan.jobs, job_code, job_err)):
            if code != 0:
                message = first_line(err)
                if any(word in err for word in UNREACHABLE) or plan.text:
                    raise BackendError(f"slurm: {argv[0]}: {message}")
                raise _Unsupported(f"{' '.join(argv[:2])} failed ({message})")
        release, cluster = "", ""
        try:
            if plan.nodes_json:
                data = _json(node_out)
                _raise_errors(data, plan.nodes)
                nodes = parse.nodes_from_json(data)
                release, cluster = parse.json_release(data), parse.json_cluster(data)
            else:
                nodes = parse.nodes_from_text(node_out)
            if plan.jobs_json:
                data = _json(job_out)
                _raise_errors(data, plan.jobs)
                jobs = parse.jobs_from_json(data)
            else:
                jobs = parse.jobs_from_text(job_out)
        except (parse.ParseError, ValueError, TypeError, KeyError, AttributeError) as error:
            if plan.text:
                raise BackendError(f"slurm: unexpected answer ({error})") from None
            raise _Unsupported(f"unexpected JSON ({error})") from None
        if not release and self.version:
            release = ".".join(str(p) for p in self.version)
        return Allocation(tuple(nodes), tuple(jobs), now, release, cluster)

    # Readings ------------------------------------------------------------------------------
    def readings(self) -> dict[str, dict[int, Gpu]]:
        """Node name -> GPU index -> the metrics backend's GPU; empty without metrics. A failing
        metrics source leaves the allocation view standing, readings unknown. The metrics are
        asked GPU by GPU for the detail nodes only (under their names for them): the others'
        summaries land in `summaries`."""
        self.summaries, self.job_utils = {}, {}
        if self.metrics is None:
            return {}
        names = {}
        if self._last is not None:
            names = metrics_names(self._last.nodes, self._metrics_nodes)
        wanted = tuple(
            None if nodes is None else frozenset(names.get(node, node) for node in nodes)
            for nodes in (self.detail, self.shown_readings)
        )
        if wanted != self._told:
            self.metrics.set_detail(*wanted)
            self._told = wanted
        try:
            snapshot = self.metrics.sample(())
        except BackendError as error:
            self.metrics_error = str(error)
            return {}
        self.metrics_error = None
        self._metrics_nodes = [node.name for node in snapshot.nodes]
        self.summaries = {n.name: n.summary for n in snapshot.nodes if n.summary and n.up}
        self.job_utils = {
            j.job_id: j.util for j in snapshot.jobs if j.summarised and j.util is not None
        }
        return {
            node.name: {gpu.index: gpu for gpu in node.gpus if not gpu.lost}
            for node in snapshot.nodes
        }

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        """Nodes outside it come as summaries: Slurm's count of their GPUs and of those no job
        holds, the metrics' summary of their readings (memory, temperature and power only for
        the nodes in `readings`)."""
        self.detail = None if nodes is None else frozenset(nodes)
        self.shown_readings = None if readings is None else frozenset(readings)

    # Snapshot ------------------------------------------------------------------------------
    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        allocation = self.allocation(requests)
        return build_snapshot(
            allocation,
            requests,
            self.readings(),
            self.user,
            self.wall(),
            host=allocation.cluster or socket.gethostname(),
            detail=self.detail,
            summaries=self.summaries,
            job_utils=self.job_utils,
        )

    def local_catalog(self) -> Catalog:
        """Flavors from the cluster itself: 1, 2, 4 ... GPUs of one node, then whole nodes."""
        return derive_catalog(self.allocation().nodes, self.readings())

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float):
        """The metrics backend's history of these GPUs, asked under its names for the nodes."""
        if self.metrics is None or self._last is None:
            return None
        names = metrics_names(self._last.nodes, self._metrics_nodes)
        renamed = [replace(g, node=names.get(g.node, g.node)) for g in gpus]
        return self.metrics.history(renamed, seconds, step)

    def pinned_state(self) -> None:
        return None

    def replay_status(self) -> None:
        return None

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()


class _Unsupported(Exception):
    """This command format is refused or unreadable here: step down to the next one."""


def _json(text: str) -> dict:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise parse.ParseError("the answer is not a JSON object")
    return data


def _raise_errors(data: dict, argv: Sequence[str]) -> None:
    """slurmctld unreachable: 22.05's squeue --json exits 0 with an error in the answer."""
    error = parse.json_errors(data)
    if error:
        raise BackendError(f"slurm: {argv[0]}: {error}")


# Building the snapshot ----------------------------------------------------------------------
def metrics_names(nodes: Sequence[parse.SlurmNode], metrics: Iterable[str]) -> dict[str, str]:
    """Slurm node -> the metrics' name for it: the same name, the same short name, or the
    node's own host name where that names one node only (NodeName and the exporter's hostname
    may differ: `gpu01` and `gpu01.cluster`)."""
    metrics = list(metrics)
    if not metrics:
        return {}
    exact = set(metrics)
    by_short = {name.split(".")[0].lower(): name for name in metrics}
    hostnames = [n.hostname for n in nodes]
    names = {}
    for node in nodes:
        candidates = [node.name]
        if node.hostname and hostnames.count(node.hostname) == 1:
            candidates.append(node.hostname)
        for candidate in candidates:
            found = candidate if candidate in exact else by_short.get(short(candidate))
            if found:
                names[node.name] = found
                break
    return names


def short(name: str) -> str:
    return name.split(".")[0].lower()


def join_readings(nodes: Sequence[parse.SlurmNode], readings: Mapping[str, T]) -> dict[str, T]:
    """Slurm node -> what the metrics read of it (its GPUs' readings by index, or its summary)."""
    return {slurm: readings[name] for slurm, name in metrics_names(nodes, readings).items()}


def build_snapshot(
    allocation: Allocation,
    requests: Sequence[JobRequest],
    readings: dict[str, dict[int, Gpu]],
    user: str,
    now: float,
    host: str = "",
    detail: Collection[str] | None = None,
    summaries: dict[str, NodeSummary] | None = None,
    job_utils: Mapping[int, float] | None = None,
) -> ClusterSnapshot:
    """The snapshot of a Slurm poll with the metrics' readings; nodes outside `detail` (None:
    every node) as summaries (Node.summary), their readings from the metrics' `summaries`. A
    job on a summarised node: its utilization as the metrics computed it (`job_utils`, where
    its GPUs carry its id), its memory unknown; never a part taken for the whole."""
    joined = join_readings(allocation.nodes, readings)
    summed = join_readings(allocation.nodes, summaries or {})
    holder = {(node, index): job.job_id for job in allocation.jobs for node, index in job.gpus}
    nodes = []
    for slurm_node in allocation.nodes:
        if not slurm_node.gpus:
            continue  # a CPU-only node is not part of the accelerator
        metrics = joined.get(slurm_node.name, {})
        used = set(slurm_node.used or ())
        if detail is not None and slurm_node.name not in detail:
            count = len(slurm_node.gpu_types)
            held = sum(1 for i in range(count) if (slurm_node.name, i) in holder or i in used)
            read = summed.get(slurm_node.name) or NodeSummary(0, 0, 0, *[None] * 5)
            summary = replace(read, gpus=count, free=count - held, lost=0)
            nodes.append(
                Node(
                    slurm_node.name,
                    (),
                    up=slurm_node.up,
                    state=slurm_node.state,
                    reason=slurm_node.reason,
                    summary=summary,
                )
            )
            continue
        gpus = []
        for index, kind in enumerate(slurm_node.gpu_types):
            held = holder.get((slurm_node.name, index))
            if held is None and index in used:
                held = 0  # allocated to a job this user cannot see (PrivateData=jobs)
            reading = metrics.get(index)
            gpus.append(
                Gpu(
                    node=slurm_node.name,
                    index=index,
                    model=(reading.model if reading and reading.model else kind.upper()),
                    util=reading.util if reading else None,
                    mem_util=reading.mem_util if reading else None,
                    mem_used_mib=reading.mem_used_mib if reading else None,
                    mem_total_mib=reading.mem_total_mib if reading else None,
                    temp_c=reading.temp_c if reading else None,
                    mem_temp_c=reading.mem_temp_c if reading else None,
                    power_w=reading.power_w if reading else None,
                    job_id=held,
                    uuid=reading.uuid if reading else "",
                )
            )
        nodes.append(
            Node(
                slurm_node.name,
                tuple(gpus),
                up=slurm_node.up,
                state=slurm_node.state,
                reason=slurm_node.reason,
            )
        )
    ours = {r.job_id: r for r in requests if r.kind == REQUEST_KIND}
    gpu_at = {(g.node, g.index): g for n in nodes for g in n.gpus}
    summarised = {n.name for n in nodes if n.summary is not None}
    jobs = []
    for job in allocation.jobs:
        if not job.waiting and not job.gpus:
            continue  # completing, its GPUs already given back
        request = ours.get(job.job_id)
        if request is not None and request.user != job.user:
            request = None  # an id Slurm gave again, to someone else
        held = [gpu_at[place] for place in job.gpus if place in gpu_at]
        used = [g.mem_used_mib for g in held if g.mem_used_mib is not None]
        utils = [g.util for g in held if g.util is not None]
        if len(held) < len(job.gpus) and any(node in summarised for node, _ in job.gpus):
            whole = (job_utils or {}).get(job.job_id)
            used, utils = [], [] if whole is None else [whole]
        jobs.append(
            Job(
                job_id=job.job_id,
                pid=request.pid if request else 0,
                user=job.user,
                command=request.command if request else job.command,
                device=request.device if request else None,
                gpus=tuple(f"{node}:{index}" for node, index in job.gpus),
                started=job.started,
                waiting=job.waiting,
                mem_used_mib=sum(used) if used else None,
                util=sum(utils) / len(utils) if utils else None,
                gpus_wanted=job.gpus_wanted,
                nodes_wanted=job.nodes_wanted,
                reason=job.reason,
            )
        )
    return ClusterSnapshot(
        time=now,
        backend="slurm",
        user=user,
        nodes=tuple(nodes),
        jobs=tuple(jobs),
        platform="Slurm",
        version_current=allocation.release or "-",
        version_latest="-",  # nothing here says which release is the newest
        host=host,
    )


def model_mib(kind: str) -> int | None:
    """Memory per GPU from the GPU type's name: `a100_40gb` says it, `h100` is known."""
    lowered = kind.lower()
    stated = re.search(r"(\d+)\s*g(?:b)?(?![a-z])", lowered)
    if stated:
        return int(stated.group(1)) * 1024
    return next((mib for name, mib in MODEL_MIB if name in lowered), None)


def derive_catalog(
    nodes: Sequence[parse.SlurmNode], readings: dict[str, dict[int, Gpu]] | None = None
) -> Catalog:
    """The flavors this cluster can give: from the largest group of alike GPU nodes (same GPU
    count and type), 1, 2, 4 ... GPUs of one node, then 2, 3, 4, 6, 8 ... whole nodes."""
    groups: dict[tuple[int, str], list[parse.SlurmNode]] = {}
    for node in nodes:
        if node.gpus:
            groups.setdefault((node.gpus, node.gpu_types[0]), []).append(node)
    if not groups:
        raise BackendError("slurm: no node of this cluster has GPUs (no gpu GRES)")
    (per_node, kind), members = max(groups.items(), key=lambda item: item[0][0] * len(item[1]))
    joined = join_readings(members, readings or {})
    totals = [g.mem_total_mib for gpus in joined.values() for g in gpus.values() if g.mem_total_mib]
    mib = totals[0] if totals else model_mib(kind) or 0
    model = (kind or "GPU").upper()
    sizes = sorted({n for n in (1, 2, 4, 8, 16) if n < per_node} | {per_node})
    counts = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
    node_counts = sorted({n for n in counts if 1 < n < len(members)} | {len(members)} - {1})

    def flavor(gpus: int, node_count: int) -> Flavor:
        size = f".{gpus * mib // 1024}GB" if mib else ""
        return Flavor(f"{gpus}x{model}{size}", gpus, node_count, mib)

    flavors = [flavor(n, 1) for n in sizes] + [flavor(n * per_node, n) for n in node_counts]
    source = f"(derived from Slurm: {len(members)} nodes of {per_node} {kind or 'gpu'} GPUs)"
    return Catalog(tuple(flavors), per_node, source)
