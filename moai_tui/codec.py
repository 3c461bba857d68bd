"""Cluster snapshots to and from plain JSON-able dicts, validating what comes back in.

Used by `smi --json` / `--backend snapshot:FILE` and by record / replay. Every decoding error
names the field that was wrong.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from moai_tui.model import MOAI_PLATFORM, ClusterSnapshot, Gpu, Job, Node

_OPTIONAL_FLOATS = ("util", "mem_util", "temp_c", "mem_temp_c", "power_w", "edge_temp_c")
_OPTIONAL_INTS = ("mem_used_mib", "mem_total_mib", "job_id", "partition_id")


class DecodeError(ValueError):
    """The data is not a snapshot; the message says which field and why."""


def _require(data: dict, key: str, kinds: type | tuple, where: str):
    value = _object(data, where).get(key)
    if isinstance(value, bool) or not isinstance(value, kinds):  # JSON true is not a number
        raise DecodeError(f"{where}.{key}: expected {_kind_name(kinds)}, got {value!r:.60}")
    return value


def _require_time(data: dict, key: str, where: str) -> float:
    """A time in seconds: a finite number (JSON's NaN and Infinity decode, but mean nothing)."""
    value = _require(data, key, (int, float), where)
    if not _finite(value):
        raise DecodeError(f"{where}.{key}: expected a finite number of seconds, got {value!r:.60}")
    return float(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _kind_name(kinds: type | tuple) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


def _optional_number(data: dict, key: str, where: str, integer: bool) -> float | int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise DecodeError(f"{where}.{key}: expected a number or null, got {value!r:.60}")
    if not integer and not _finite(value):
        raise DecodeError(f"{where}.{key}: not a finite number")
    return value


def gpu_to_dict(gpu: Gpu) -> dict:
    out = asdict(gpu)
    del out["node"]
    return out


def snapshot_to_dict(snapshot: ClusterSnapshot) -> dict:
    """A snapshot read GPU by GPU (smi, record: no caller narrowed the backend's detail)."""
    if any(node.summary is not None for node in snapshot.nodes):
        raise ValueError("a snapshot with summarised nodes holds no GPUs to write for them")
    return {
        "time": snapshot.time,
        "backend": snapshot.backend,
        "user": snapshot.user,
        "host": snapshot.host,
        "platform": snapshot.platform,
        "version": {"current": snapshot.version_current, "latest": snapshot.version_latest},
        "nodes": [
            {
                "name": n.name,
                "up": n.up,
                "state": n.state,
                "reason": n.reason,
                "gpus": [gpu_to_dict(g) for g in n.gpus],
            }
            for n in snapshot.nodes
        ],
        "jobs": [
            {**{k: v for k, v in asdict(j).items() if k != "summarised"}, "gpus": list(j.gpus)}
            for j in snapshot.jobs
        ],
        "attached": snapshot.attached,
        "local": snapshot.local,
    }


def _object(data: object, where: str) -> dict:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object, got {type(data).__name__}")
    return data


def _gpu_from(data: dict, node: str, where: str) -> Gpu:
    _object(data, where)
    values = {k: _optional_number(data, k, where, False) for k in _OPTIONAL_FLOATS}
    values.update({k: _optional_number(data, k, where, True) for k in _OPTIONAL_INTS})
    return Gpu(
        node=node,
        index=_require(data, "index", int, where),
        model=str(data.get("model", "")),
        lost=bool(data.get("lost", False)),
        uuid=str(data.get("uuid", "")),
        compute_partition=str(data.get("compute_partition", "")),
        memory_partition=str(data.get("memory_partition", "")),
        **values,
    )


def _job_from(data: dict, where: str) -> Job:
    _object(data, where)
    gpus = _require(data, "gpus", list, where)
    if not all(isinstance(g, str) for g in gpus):
        raise DecodeError(f"{where}.gpus: expected a list of 'node:index' strings")
    device = data.get("device")
    if device is not None and (isinstance(device, bool) or not isinstance(device, int)):
        raise DecodeError(f"{where}.device: expected an integer or null")
    return Job(
        job_id=_require(data, "job_id", int, where),
        pid=_require(data, "pid", int, where),
        user=_require(data, "user", str, where),
        command=_require(data, "command", str, where),
        device=device,
        gpus=tuple(gpus),
        started=_require_time(data, "started", where),
        waiting=bool(data.get("waiting", False)),
        mem_used_mib=_optional_number(data, "mem_used_mib", where, True),
        util=_optional_number(data, "util", where, False),
        gpus_wanted=_optional_number(data, "gpus_wanted", where, True) or 0,
        nodes_wanted=_optional_number(data, "nodes_wanted", where, True) or 0,
        reason=str(data.get("reason", "")),
    )


def snapshot_from_dict(data: object, where: str = "snapshot") -> ClusterSnapshot:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    version = _require(data, "version", dict, where)
    nodes = []
    for i, node in enumerate(_require(data, "nodes", list, where)):
        node_where = f"{where}.nodes[{i}]"
        name = _require(node, "name", str, node_where)
        gpus = tuple(
            _gpu_from(g, name, f"{node_where}.gpus[{j}]")
            for j, g in enumerate(_require(node, "gpus", list, node_where))
        )
        node = _object(node, node_where)
        nodes.append(
            Node(
                name,
                gpus,
                bool(node.get("up", True)),
                str(node.get("state", "")),
                str(node.get("reason", "")),
            )
        )
    jobs = tuple(
        _job_from(j, f"{where}.jobs[{i}]")
        for i, j in enumerate(_require(data, "jobs", list, where))
    )
    return ClusterSnapshot(
        time=_require_time(data, "time", where),
        backend=_require(data, "backend", str, where),
        user=_require(data, "user", str, where),
        nodes=tuple(nodes),
        jobs=jobs,
        platform=str(data.get("platform", MOAI_PLATFORM)),
        version_current=str(version.get("current", "-")),
        version_latest=str(version.get("latest", "-")),
        host=str(data.get("host", "")),
        attached=bool(data.get("attached", False)),
        local=bool(data.get("local", False)),
    )
