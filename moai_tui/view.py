"""What the user sees, computed from their accelerators and one cluster snapshot.

Pure functions: `smi` and the dashboard both call these, so they always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from moai_tui.model import ClusterSnapshot, Flavor, Gpu, Job
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
    gpus: tuple[Gpu, ...]  # the GPUs the running job holds, in cluster order
    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization: float | None

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.waiting


def mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


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
        gpus = tuple(gpu_map[loc] for loc in job.gpus if loc in gpu_map) if job else ()
        used = total = util = None
        if job is not None and not job.waiting:
            known_used = [g.mem_used_mib for g in gpus if g.mem_used_mib is not None]
            used = sum(known_used) if known_used else None
            totals = [g.mem_total_mib for g in gpus]
            if gpus and all(t is not None for t in totals):
                total = sum(totals)
            elif flavor is not None:
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


def fmt_number(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{round(value)} {unit}"


def unavailable_reason(flavor: Flavor, snapshot: ClusterSnapshot) -> str | None:
    """Why the flavor can never run on what the backend has, or None when it can."""
    nodes = [n for n in snapshot.nodes if n.up]
    gpus = sum(len(n.gpus) for n in nodes)
    where = "this machine" if snapshot.backend == "nvml" else "the cluster"
    if flavor.gpus > gpus:
        return f"needs {flavor.gpus} GPUs, {where} has {gpus}"
    if flavor.nodes > len(nodes):
        return f"needs {flavor.nodes} nodes, {where} has {len(nodes)}"
    return None
