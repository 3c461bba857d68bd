"""Readings a backend got wrong (NaN, negative, absurd, duplicated GPUs) replaced by "not
available" before anyone formats them, with a line saying what was dropped."""

from __future__ import annotations

import math
from dataclasses import replace

from moai_tui.model import ClusterSnapshot, Gpu

# field -> (lowest, highest) a real GPU can report
BOUNDS = {
    "util": (0.0, 100.0),
    "mem_util": (0.0, 100.0),
    "temp_c": (-40.0, 150.0),
    "mem_temp_c": (-40.0, 150.0),
    "edge_temp_c": (-40.0, 150.0),
    "power_w": (0.0, 5000.0),
    "mem_used_mib": (0, 16 * 1024 * 1024),
    "mem_total_mib": (1, 16 * 1024 * 1024),
}


def _checked(value, low, high):
    if value is None:
        return None, False
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, True
    if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        return None, True
    return value, False


def plausible(gpu: Gpu) -> bool:
    """Every reading in range, in one expression: the path taken every tick for every GPU
    (NaN fails each comparison, so it drops to the careful path)."""
    u, m, t, mt, p = gpu.util, gpu.mem_util, gpu.temp_c, gpu.mem_temp_c, gpu.power_w
    et = gpu.edge_temp_c
    used, total = gpu.mem_used_mib, gpu.mem_total_mib
    return (
        (u is None or 0.0 <= u <= 100.0)
        and (m is None or 0.0 <= m <= 100.0)
        and (t is None or -40.0 <= t <= 150.0)
        and (mt is None or -40.0 <= mt <= 150.0)
        and (et is None or -40.0 <= et <= 150.0)
        and (p is None or 0.0 <= p <= 5000.0)
        and (total is None or 1 <= total <= 16 * 1024 * 1024)
        and (used is None or 0 <= used <= (total or 16 * 1024 * 1024))
    )


def clean_gpu(gpu: Gpu) -> tuple[Gpu, int]:
    try:
        if plausible(gpu):
            return gpu, 0
    except TypeError:  # not a number at all: the careful path says which
        pass
    changes, bad = {}, 0
    for name, (low, high) in BOUNDS.items():
        value, wrong = _checked(getattr(gpu, name), low, high)
        if wrong:
            changes[name] = value
            bad += 1
    if (
        gpu.mem_used_mib is not None
        and gpu.mem_total_mib
        and "mem_used_mib" not in changes
        and gpu.mem_used_mib > gpu.mem_total_mib
    ):
        changes["mem_used_mib"] = None
        bad += 1
    return (replace(gpu, **changes) if changes else gpu), bad


def clean_snapshot(snapshot: ClusterSnapshot) -> tuple[ClusterSnapshot, str | None]:
    """The snapshot with impossible values removed, and a line for the user, or None."""
    bad = duplicates = 0
    nodes = []
    seen_nodes: set[str] = set()
    for node in snapshot.nodes:
        if node.name in seen_nodes:
            duplicates += len(node.gpus)
            continue
        seen_nodes.add(node.name)
        gpus, seen, changed = [], set(), False
        for gpu in node.gpus:
            if gpu.index in seen:
                duplicates += 1
                changed = True
                continue
            seen.add(gpu.index)
            cleaned, wrong = clean_gpu(gpu)
            bad += wrong
            changed |= bool(wrong)
            gpus.append(cleaned)
        nodes.append(replace(node, gpus=tuple(gpus)) if changed else node)
    if not bad and not duplicates:
        return snapshot, None
    parts = []
    if bad:
        parts.append(f"{bad} impossible reading{'s' if bad > 1 else ''} shown as -")
    if duplicates:
        parts.append(f"{duplicates} duplicated GPU{'s' if duplicates > 1 else ''} ignored")
    return replace(
        snapshot, nodes=tuple(nodes)
    ), f"invalid data from {snapshot.backend}: " + ", ".join(parts)
