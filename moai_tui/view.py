"""What the user sees, computed from their accelerators and one cluster snapshot.

Pure functions: `smi` and the dashboard both call these, so they always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from moai_tui.model import ClusterSnapshot, Flavor, Gpu, Job, Node, NodeSummary
from moai_tui.state import Device

ACCELERATOR_NAME = "MoAI Accelerator"
TEMP_BANDS = ((98, "act"), (94, "warning"), (86, "caution"))


@dataclass(frozen=True)
class DeviceView:
    device: int
    current: bool
    flavor_name: str
    flavor: Flavor | None
    job: Job | None
    gpus: tuple[Gpu, ...]  # the GPUs the device holds now (its job's, or its nodes'), in order
    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization: float | None

    @property
    def active(self) -> bool:
        """Holding GPUs: a job runs on it, or it is a view onto the cluster's nodes."""
        return bool(self.gpus)


def mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def device_nodes(
    devices: Sequence[Device], flavors: Mapping[str, Flavor], snapshot: ClusterSnapshot
) -> set[str]:
    """The nodes the user's devices stand on, as device_views takes them: a job's nodes, or on
    an attached backend the first nodes of the cluster. Their GPUs must be known one by one."""
    names: set[str] = set()
    for device in devices:
        flavor = flavors.get(device.flavor)
        job = snapshot.job_on_device(device.id)
        if job is not None:
            names.update(location.rsplit(":", 1)[0] for location in job.gpus)
        elif snapshot.attached and flavor is not None:
            names.update(node.name for node in snapshot.nodes[: flavor.nodes])
    return names


def device_views(
    devices: Sequence[Device],
    current: int,
    flavors: Mapping[str, Flavor],
    snapshot: ClusterSnapshot,
) -> list[DeviceView]:
    gpu_map = snapshot.gpu_map()
    views = []
    for device in sorted(devices, key=lambda d: d.id):
        flavor = flavors.get(device.flavor)
        job = snapshot.job_on_device(device.id)
        if job is not None:
            gpus = () if job.waiting else tuple(gpu_map[loc] for loc in job.gpus if loc in gpu_map)
        elif snapshot.attached and flavor is not None:
            gpus = tuple(g for n in snapshot.nodes[: flavor.nodes] for g in n.gpus)[: flavor.gpus]
        else:
            gpus = ()
        used = total = util = None
        if gpus:
            known_used = [g.mem_used_mib for g in gpus if g.mem_used_mib is not None]
            used = sum(known_used) if known_used else None
            totals = [g.mem_total_mib for g in gpus]
            if all(t is not None for t in totals):
                total = sum(totals)
            elif flavor is not None and flavor.total_mib:  # 0: the flavor's memory is unknown
                total = flavor.total_mib
            util = mean([g.util for g in gpus if not g.lost])
        views.append(
            DeviceView(
                device.id, device.id == current, device.flavor, flavor, job, gpus, used, total, util
            )
        )
    return views


def temperature_band(temp_c: float | None) -> str | None:
    """The admin bands of the platform: 86-93 caution, 94-97 warning, 98 and up act."""
    if temp_c is None:
        return None
    for floor, band in TEMP_BANDS:
        if temp_c >= floor:
            return band
    return None


def fmt_mib(value: int | None) -> str:
    return "-" if value is None else f"{value} MiB"


def fmt_percent(value: float | None) -> str:
    """moreh-smi's utilization: three characters right-aligned, then ' %'."""
    return "-" if value is None else f"{round(value):3d} %"


def plural(count: int, word: str) -> str:
    """1 GPU, 2 GPUs."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def fmt_mem(mib: float | None) -> str:
    """Memory as people read it: 397 MiB, 48.0 GiB, 3.07 TiB (smi keeps MiB: scripts parse it)."""
    if mib is None:
        return "-"
    if mib < 1024:
        return f"{mib:.0f} MiB"
    gib = mib / 1024
    if gib < 100:
        return f"{gib:.1f} GiB"
    if gib < 1024:
        return f"{gib:.0f} GiB"
    return f"{gib / 1024:.2f} TiB"


def fmt_mem_pair(used: float | None, total: float | None) -> str:
    """ "1.54/2.00 TiB": used and total in the total's unit."""
    if total is None:
        return fmt_mem(used)
    text = fmt_mem(total)
    number, unit = text.split(" ")
    scale = {"MiB": 1, "GiB": 1024, "TiB": 1024 * 1024}[unit]
    decimals = len(number.partition(".")[2])
    return f"{'-' if used is None else f'{used / scale:.{decimals}f}'}/{number} {unit}"


def fmt_power(watts: float | None) -> str:
    if watts is None:
        return "-"
    return f"{watts:.0f} W" if watts < 1000 else f"{watts / 1000:.1f} kW"


def fmt_number(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{round(value)} {unit}"


def unavailable_reason(flavor: Flavor, snapshot: ClusterSnapshot) -> str | None:
    """Why the flavor can never run on what the backend has, or None when it can."""
    nodes = [n for n in snapshot.nodes if n.up]
    gpus = sum(n.gpu_count for n in nodes)
    where = "this machine" if snapshot.local else "the cluster"
    if flavor.gpus > gpus:
        return f"needs {flavor.gpus} GPUs, {where} has {gpus}"
    if flavor.nodes > len(nodes):
        return f"needs {flavor.nodes} nodes, {where} has {len(nodes)}"
    return None


# A GPU nobody is known to hold counts as busy anyway when it works this hard or holds this much
# memory: a metrics-only backend (Prometheus) knows no jobs, and an idle-looking GPU that holds
# 10 % of its memory is someone's.
BUSY_UTIL = 5.0
BUSY_MEMORY_SHARE = 0.10


def is_free(gpu: Gpu) -> bool:
    """Nobody holds it and it does nothing: a flavor could take it now."""
    if gpu.lost or gpu.job_id is not None:
        return False
    if gpu.util is not None and gpu.util >= BUSY_UTIL:
        return False
    if gpu.mem_used_mib and gpu.mem_total_mib:
        return gpu.mem_used_mib < BUSY_MEMORY_SHARE * gpu.mem_total_mib
    return True


def free_count(node: Node) -> int:
    """The node's free GPUs (is_free), counted by the backend where it summarised the node."""
    if node.summary is not None:
        return node.summary.free
    return sum(1 for g in node.gpus if is_free(g))


def node_util(node: Node) -> float | None:
    """The node's mean utilization (the backend's where it summarised the node)."""
    if node.summary is not None:
        return node.summary.util
    return mean([g.util for g in node.gpus if not g.lost])


def node_memory(node: Node) -> float | None:
    """The node's memory in use, in percent of what its GPUs report."""
    summary = node.summary
    if summary is not None:
        used, total = summary.mem_used_mib, summary.mem_total_mib
    else:
        known = [g for g in node.gpus if not g.lost]
        used_known = [g.mem_used_mib for g in known if g.mem_used_mib is not None]
        totals = [g.mem_total_mib for g in known if g.mem_total_mib]
        used = sum(used_known) if used_known else None
        total = sum(totals) if totals else None
    return 100.0 * used / total if used is not None and total else None


def node_temp(node: Node) -> float | None:
    """The node's hottest GPU."""
    if node.summary is not None:
        return node.summary.temp_c
    return max((g.temp_c for g in node.gpus if g.temp_c is not None), default=None)


def node_power(node: Node) -> float | None:
    """The node's GPUs' power, in total."""
    if node.summary is not None:
        return node.summary.power_w
    power = [g.power_w for g in node.gpus if g.power_w is not None]
    return sum(power) if power else None


# The most GPUs a screen asks for one by one. A screen that shows more (a large cluster's grid)
# asks so for the cursor's node only and draws the others from the backend's per-node summaries:
# its refresh then grows with the nodes, not the GPUs (benchmarks/results.md, Prometheus).
DETAIL_GPUS = 512


def detail_nodes(shown: Sequence[Node], cursor: Node) -> frozenset[str]:
    """The nodes to fetch GPU by GPU: those on screen, or the cursor's alone where they hold
    more than DETAIL_GPUS GPUs."""
    if sum(n.gpu_count for n in shown) > DETAIL_GPUS:
        return frozenset({cursor.name})
    return frozenset(n.name for n in shown) | {cursor.name}


# Grid sorts that order every node by a reading (its memory, its temperature).
SORTS_BY_READING = frozenset({"memory", "temperature"})


def reading_nodes(
    shown: Sequence[Node], cursor: Node, figures_drawn: bool, sort: str
) -> frozenset[str] | None:
    """The summarised nodes whose memory, temperature and power to fetch: every node's (None)
    while the grid is sorted by one of them; else those on screen while the grid draws each
    node's figures, and the cursor's (its panel), none other while cells show utilization alone.
    A large cluster's summaries are then 3 figures a node, not 7."""
    if sort in SORTS_BY_READING:
        return None
    return frozenset(n.name for n in shown if figures_drawn) | {cursor.name}


def has_readings(summary: NodeSummary) -> bool:
    """Whether a node's summary carries any of memory, temperature and power."""
    readings = (summary.mem_used_mib, summary.mem_total_mib, summary.temp_c, summary.power_w)
    return any(value is not None for value in readings)


def fits_now(flavor: Flavor, snapshot: ClusterSnapshot) -> bool:
    """Whether enough nodes have enough free GPUs for the flavor at this moment."""
    per_node = flavor.gpus_per_node
    ready = sum(1 for node in snapshot.nodes if node.accepts_work and free_count(node) >= per_node)
    return ready >= flavor.nodes


def fmt_runtime(seconds: float) -> str:
    """A job's runtime to the minute: a table of jobs need not change every second."""
    minutes = max(0, int(seconds)) // 60
    if minutes < 1:
        return "<1m"
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def fmt_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if count < 1024 or unit == "T":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return "-"
