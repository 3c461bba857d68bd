"""The cluster as the dashboard summarises it: totals, who holds what, where a flavor would land,
and one row per job. Pure functions of a snapshot and the user's device views, no textual, so
they are tested on their own and any front end can show them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from moai_tui.model import ClusterSnapshot, Flavor, Job
from moai_tui.view import (
    DeviceView,
    fits_now,
    free_count,
    is_free,
    mean,
    unavailable_reason,
)


def natural_key(name: str) -> tuple:
    """node2 before node10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


@dataclass(frozen=True)
class ClusterSummary:
    gpus: int  # on nodes that are up
    free: int
    nodes: int
    whole_free_nodes: int
    down_nodes: int
    lost_gpus: int
    mean_util: float | None
    mine_gpus: int
    mine_mem_mib: int | None
    mine_util: float | None
    largest_fit: str | None  # the biggest flavor that fits now, by GPUs
    users: tuple[tuple[str, int], ...]  # (user, GPUs held), most first
    waiting_jobs: int


def summarise(
    snapshot: ClusterSnapshot, views: Sequence[DeviceView], flavors: Iterable[Flavor]
) -> ClusterSummary:
    gpus = free = whole = down = lost = 0
    util_sum, util_gpus = 0.0, 0  # a mean over every GPU, each weighed once
    for node in snapshot.nodes:
        if not node.up:
            down += 1
            lost += node.gpu_count
            continue
        summary = node.summary
        if summary is not None:  # counted by the backend (a node it only summarised)
            lost += summary.lost
            gpus += summary.gpus - summary.lost
            if summary.util is not None:  # its mean, weighed by its GPUs
                util_sum += summary.util * (summary.gpus - summary.lost)
                util_gpus += summary.gpus - summary.lost
            node_free = summary.free if node.accepts_work else 0
        else:
            node_free = 0
            for gpu in node.gpus:
                if gpu.lost:
                    lost += 1
                    continue
                gpus += 1
                if gpu.util is not None:
                    util_sum += gpu.util
                    util_gpus += 1
                if node.accepts_work and is_free(gpu):
                    node_free += 1
        free += node_free
        whole += node.gpu_count > 0 and node_free == node.gpu_count
    mine = [g for v in views for g in v.gpus if not g.lost]
    known_mem = [g.mem_used_mib for g in mine if g.mem_used_mib is not None]
    held: dict[str, int] = {}
    waiting = 0
    for job in snapshot.jobs:
        if job.waiting:
            waiting += 1
        elif job.gpu_count:
            held[job.user] = held.get(job.user, 0) + job.gpu_count
    fitting = [
        f for f in flavors if unavailable_reason(f, snapshot) is None and fits_now(f, snapshot)
    ]
    largest = max(fitting, key=lambda f: (f.gpus, f.nodes), default=None)
    return ClusterSummary(
        gpus=gpus,
        free=free,
        nodes=len(snapshot.nodes),
        whole_free_nodes=whole,
        down_nodes=down,
        lost_gpus=lost,
        mean_util=util_sum / util_gpus if util_gpus else None,
        mine_gpus=len(mine),
        mine_mem_mib=sum(known_mem) if known_mem else None,
        mine_util=mean([g.util for g in mine]),
        largest_fit=largest.name if largest else None,
        users=tuple(sorted(held.items(), key=lambda item: (-item[1], item[0]))),
        waiting_jobs=waiting,
    )


@dataclass(frozen=True)
class Landing:
    """Where a flavor would run if a job started now, or why it would wait."""

    nodes: tuple[str, ...]  # empty when it would wait
    gpus: tuple[str, ...]  # locations "node:index"
    wait_reason: str | None
    # GPUs taken on each of `nodes`: where the backend only summarised a node, its GPUs are
    # not among `gpus`, and the grid marks that many of its free ones.
    per_node: int = 0


def landing(flavor: Flavor, snapshot: ClusterSnapshot) -> Landing:
    """The first nodes (least busy first, then by name) with enough free GPUs for the flavor.
    On a node the backend only summarised, which GPUs are free is not known: it is chosen by
    its count of free GPUs, and its GPUs are not among the locations."""
    per_node = flavor.gpus_per_node
    ready = []
    for node in snapshot.nodes:
        if not node.accepts_work:
            continue
        free = [g for g in node.gpus if is_free(g)]
        count = free_count(node)
        if count >= per_node:
            ready.append((node.gpu_count - count, natural_key(node.name), node, free, count))
    ready.sort(key=lambda entry: entry[:2])
    if len(ready) < flavor.nodes:
        whole = sum(1 for entry in ready if entry[0] == 0)
        if flavor.nodes == 1:
            reason = f"needs {per_node} free GPUs on one node, none has"
        else:
            reason = (
                f"needs {flavor.nodes} nodes with {per_node} free GPUs, {len(ready)} have"
                if per_node < max((n.gpu_count for n in snapshot.nodes), default=0)
                else f"needs {flavor.nodes} whole nodes, {whole} free"
            )
        return Landing((), (), reason)
    chosen = ready[: flavor.nodes]
    locations: list[str] = []
    remaining = flavor.gpus
    for _, _, _, free, count in sorted(chosen, key=lambda entry: entry[1]):
        take = min(per_node, remaining, count)
        locations += [g.location for g in free[:take]]
        remaining -= take
    return Landing(
        tuple(entry[2].name for entry in sorted(chosen, key=lambda e: e[1])),
        tuple(locations),
        None,
        per_node,
    )


def device_state(view: DeviceView, snapshot: ClusterSnapshot, now: float) -> str:
    """One phrase for the device's row: what runs on it, or what would happen if it ran."""
    if view.flavor is None:
        return "flavor not in this catalog: switch it (f)"
    job = view.job
    if job is not None and job.waiting:
        return "waiting: " + waiting_reason(job, view.flavor, snapshot)
    if job is not None:
        return f"job {job.job_id} running"
    if snapshot.attached:
        return "watching its nodes"
    reason = unavailable_reason(view.flavor, snapshot)
    if reason:
        return f"not available here: {reason}"
    where = landing(view.flavor, snapshot)
    if where.wait_reason:
        return f"idle · a job would wait: {where.wait_reason}"
    return f"idle · a job would start now on {compress_names(where.nodes)}"


def waiting_reason(job: Job, flavor: Flavor | None, snapshot: ClusterSnapshot) -> str:
    """Why a job waits: the scheduler's reason where it gives one, else what it needs."""
    if job.reason:
        return job.reason
    if flavor is not None:
        return landing(flavor, snapshot).wait_reason or "for free GPUs"
    if job.nodes_wanted:
        return f"needs {job.gpus_wanted} GPUs on {job.nodes_wanted} nodes"
    return "for free GPUs"


def compress_names(names: Sequence[str], limit: int = 4) -> str:
    """node03, node04, node05 -> node03-05; a long list ends in "+N"."""
    if not names:
        return "-"
    groups: list[list[str]] = []
    for name in names:
        match = re.fullmatch(r"(.*?)(\d+)", name)
        last = groups[-1][-1] if groups else None
        previous = re.fullmatch(r"(.*?)(\d+)", last) if last else None
        if (
            match
            and previous
            and match.group(1) == previous.group(1)
            and len(match.group(2)) == len(previous.group(2))
            and int(match.group(2)) == int(previous.group(2)) + 1
        ):
            groups[-1].append(name)
        else:
            groups.append([name])
    parts = []
    for group in groups:
        if len(group) == 1:
            parts.append(group[0])
        else:
            tail = re.fullmatch(r"(.*?)(\d+)", group[-1]).group(2)
            parts.append(f"{group[0]}-{tail}")
    shown = ", ".join(parts[:limit])
    return shown + (f" +{len(parts) - limit}" if len(parts) > limit else "")


@dataclass(frozen=True)
class JobRow:
    job: Job
    mine: bool
    gpus: int
    nodes: int
    util: float | None
    mem_used_mib: int | None
    runtime_s: float | None
    state: str


def job_rows(snapshot: ClusterSnapshot, views: Sequence[DeviceView]) -> list[JobRow]:
    """Every job the backend knows, the user's own first: a row of the jobs table each."""
    flavors = {v.device: v.flavor for v in views}
    gpu_map = snapshot.gpu_map()
    rows = []
    for job in snapshot.jobs:
        mine = job.user == snapshot.user and job.device is not None
        held = [gpu_map[loc] for loc in job.gpus if loc in gpu_map]
        util = job.util if job.util is not None else mean([g.util for g in held if not g.lost])
        if job.waiting:
            flavor = flavors.get(job.device) if mine else None
            state = "waiting: " + waiting_reason(job, flavor, snapshot)
            gpus = job.gpus_wanted or (flavor.gpus if flavor else 0)
            nodes = job.nodes_wanted or (flavor.nodes if flavor else 0)
        else:
            state = "running"
            gpus = job.gpu_count
            nodes = len(job.node_names)
        rows.append(
            JobRow(
                job=job,
                mine=mine,
                gpus=gpus,
                nodes=nodes,
                util=None if job.waiting else util,
                mem_used_mib=None if job.waiting else job.mem_used_mib,
                runtime_s=snapshot.time - job.started if job.started and not job.waiting else None,
                state=state,
            )
        )
    rows.sort(key=lambda row: not row.mine)
    return rows
