"""Record any backend's samples as JSON lines, and play them back (`replay:FILE[@SPEED]`).

Two formats are read: moai-tui's own recordings (one snapshot dict a line, as `smi --json`
writes the cluster) and raw NVML traces like the H200 fixture (`{"t", "util": {"ok": ...}, ...}`
a line, with a `*-static.json` beside it), so a real GPU trace can be watched in the dashboard.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from moai_tui.codec import DecodeError, snapshot_from_dict, snapshot_to_dict
from moai_tui.errors import UsageError
from moai_tui.model import NVIDIA_DRIVER, ClusterSnapshot, Gpu, Job, JobRequest, Node

MIB = 1024 * 1024


def record(
    backend,
    requests: Callable[[], Sequence[JobRequest]],
    out: TextIO,
    seconds: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write one line per sample for `seconds`; returns the number of samples written."""
    written = 0
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        out.write(json.dumps(snapshot_to_dict(backend.sample(requests())), separators=(",", ":")))
        out.write("\n")
        out.flush()
        written += 1
        if started + interval > deadline:
            return written
        sleep(max(0.0, interval - (time.monotonic() - started)))


def _ok(field: object):
    """The value of an NVML trace field ({"ok": v} or {"error": ...}), None on error."""
    return field.get("ok") if isinstance(field, dict) else None


def nvml_trace_frame(line: dict, static: dict, host: str) -> ClusterSnapshot:
    """One line of a raw NVML trace as a one-GPU snapshot."""
    device = static.get("devices", [{}])[0] if isinstance(static.get("devices"), list) else {}
    util = _ok(line.get("util")) or {}
    memory = _ok(line.get("mem")) or {}
    power = _ok(line.get("power_mW"))
    temp = _ok(line.get("temp_c"))
    procs = _ok(line.get("procs")) or []
    if not isinstance(util, dict) or not isinstance(memory, dict) or not isinstance(procs, list):
        raise DecodeError("util, mem and procs must be objects / lists")
    gpu = Gpu(
        node=host,
        index=0,
        model=str(_ok(device.get("name")) or "NVIDIA GPU"),
        util=_number(util.get("gpu")),
        mem_util=_number(util.get("memory")),
        mem_used_mib=_mib(memory.get("used")),
        mem_total_mib=_mib(memory.get("total")),
        temp_c=_number(temp),
        power_w=None if _number(power) is None else power / 1000.0,
    )
    records = [p for p in procs if isinstance(p, dict) and isinstance(p.get("pid"), int)]
    if procs and not records:
        # Some recorders wrote process objects as their repr(); the per-process utilization
        # samples still name the pids (without memory).
        samples = _ok(line.get("proc_util")) or []
        records = [
            {"pid": p["pid"]}
            for p in samples
            if isinstance(p, dict) and isinstance(p.get("pid"), int)
        ]
    jobs = tuple(
        Job(
            p["pid"],
            p["pid"],
            "-",
            f"pid {p['pid']}",
            None,
            (gpu.location,),
            mem_used_mib=_mib(p.get("usedGpuMemory")),
        )
        for p in records
    )
    driver = str(_ok(static.get("driver")) or "-")
    return ClusterSnapshot(
        time=float(line.get("t", 0.0)),
        backend="replay",
        user="-",
        nodes=(Node(host, (gpu,)),),
        jobs=jobs,
        platform=NVIDIA_DRIVER,
        version_current=driver,
        version_latest=driver,
        host=host,
    )


def _mib(value: object) -> int | None:
    return int(value) // MIB if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def load_recording(path: Path) -> list[ClusterSnapshot]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"recording {path}: cannot read it ({error})") from None
    static: dict | None = None
    frames = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            if isinstance(data, dict) and "util" in data and "nodes" not in data:
                if static is None:
                    static = _static_beside(path)
                frames.append(nvml_trace_frame(data, static, path.stem.split("-")[0]))
            else:
                frames.append(snapshot_from_dict(data, f"line {number}"))
        except (ValueError, TypeError, KeyError, RecursionError) as error:
            raise UsageError(
                f"recording {path}, line {number}: not a moai-tui or NVML trace sample ({error})"
            ) from None
    if not frames:
        raise UsageError(f"recording {path}: no samples in it; record one with 'moai-tui record'")
    return frames


def _static_beside(path: Path) -> dict:
    """h200-trace.jsonl's static facts live in h200-static.json beside it (optional)."""
    candidate = path.with_name(path.name.replace("-trace.jsonl", "-static.json"))
    try:
        data = json.loads(candidate.read_text("utf-8")) if candidate != path else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ReplayBackend:
    """Plays frames back at their recorded pace times `speed`, looping at the end."""

    name = "replay"
    notice: str | None = None
    visible_devices_env = None  # recorded GPUs cannot run anything

    def __init__(
        self,
        frames: list[ClusterSnapshot],
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.frames = frames
        self.speed = speed
        self.clock = clock
        self.started = clock()
        self.span = frames[-1].time - frames[0].time

    @classmethod
    def from_spec(cls, spec: str) -> ReplayBackend:
        path, _, speed_text = spec.rpartition("@") if "@" in spec else (spec, "", "1")
        try:
            speed = float(speed_text)
            if not speed > 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"replay speed {speed_text!r} must be a positive number") from None
        return cls(load_recording(Path(path)), speed)

    def frame_at(self, elapsed: float) -> ClusterSnapshot:
        offset = (elapsed * self.speed) % self.span if self.span > 0 else 0.0
        target = self.frames[0].time + offset
        lo, hi = 0, len(self.frames) - 1
        while lo < hi:  # the last frame at or before target
            mid = (lo + hi + 1) // 2
            if self.frames[mid].time <= target:
                lo = mid
            else:
                hi = mid - 1
        return self.frames[lo]

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        return self.frame_at(self.clock() - self.started)

    def local_catalog(self) -> None:
        return None

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> None:
        return None

    def pinned_state(self) -> None:
        return None

    def close(self) -> None:
        pass
