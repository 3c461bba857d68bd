"""Record any backend's samples as JSON lines, and play them back (`replay:FILE[@SPEED]`).

Two formats are read: moai-tui's own recordings (one snapshot dict a line, as `smi --json`
writes the cluster) and raw NVML traces like the H200 fixture (`{"t", "util": {"ok": ...}, ...}`
a line, with a `*-static.json` beside it), so a real GPU trace can be watched in the dashboard.

A replay is never live: `replay_status()` says where it stands in the recording, its frames
name the backend "replay", and their pids are nobody's on this machine. A recording of one
machine's GPUs (a raw NVML trace, or `record` of the nvml backend) brings the flavors derived
from those GPUs, as the nvml backend derives them, and shows its GPUs on the user's device.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from moai_tui.backends import ReplayStatus
from moai_tui.catalog import Catalog, derived_catalog
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


def _sampled(line: dict) -> dict[int, float | None]:
    """pid -> SM utilization of the per-process samples in one trace line."""
    samples = _ok(line.get("proc_util"))
    if not isinstance(samples, list):
        return {}
    return {
        p["pid"]: _number(p.get("smUtil"))
        for p in samples
        if isinstance(p, dict) and isinstance(p.get("pid"), int)
    }


def trace_processes(lines: list[dict]) -> list[list[dict]]:
    """Per trace line, its processes as {"pid", "usedGpuMemory"?} records.

    Recorders that kept NVML's process records write them whole. Others wrote each one as its
    repr() (the fixtures do): such a line says how many processes ran, and only its
    per-process utilization samples name pids, one or two a line. Its processes are then the
    pids named most recently, at or before it (before any was named: the first ones named
    later), their memory unknown."""
    everyone = list(dict.fromkeys(pid for line in lines for pid in _sampled(line)))
    recent: list[int] = []  # most recently named first
    out = []
    for line in lines:
        for pid in _sampled(line):
            recent = [pid, *(p for p in recent if p != pid)]
        procs = _ok(line.get("procs")) or []
        if not isinstance(procs, list):
            raise DecodeError("procs must be a list")
        records = [p for p in procs if isinstance(p, dict) and isinstance(p.get("pid"), int)]
        if procs and not records:
            named = [*recent, *(p for p in everyone if p not in recent)][: len(procs)]
            records = [{"pid": pid} for pid in sorted(named)]
        out.append(records)
    return out


def nvml_trace_frame(line: dict, static: dict, host: str, processes: list[dict]) -> ClusterSnapshot:
    """One line of a raw NVML trace (and its processes, from trace_processes) as a one-GPU
    snapshot."""
    devices = static.get("devices")
    device = devices[0] if isinstance(devices, list) and devices else {}
    util = _ok(line.get("util")) or {}
    memory = _ok(line.get("mem")) or {}
    power = _ok(line.get("power_mW"))
    temp = _ok(line.get("temp_c"))
    if not isinstance(util, dict) or not isinstance(memory, dict) or not isinstance(device, dict):
        raise DecodeError("util, mem and the static device must be objects")
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
        uuid=str(_ok(device.get("uuid")) or ""),
    )
    sm_util = _sampled(line)
    jobs = tuple(
        Job(
            p["pid"],
            p["pid"],
            "-",
            f"pid {p['pid']}",
            None,
            (gpu.location,),
            mem_used_mib=_mib(p.get("usedGpuMemory")),
            util=sm_util.get(p["pid"]),  # sampled on this line, else not known
        )
        for p in processes
    )
    driver = str(_ok(static.get("driver")) or "-")
    return ClusterSnapshot(
        time=_number(line.get("t")) or 0.0,
        backend="nvml",
        user="-",
        # As the nvml backend marks a GPU: held by (the last of) the processes on it.
        nodes=(Node(host, (replace(gpu, job_id=jobs[-1].job_id) if jobs else gpu,)),),
        jobs=jobs,
        platform=NVIDIA_DRIVER,
        version_current=driver,
        version_latest="-",
        host=host,
        local=True,
    )


def _mib(value: object) -> int | None:
    return int(value) // MIB if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Recording:
    """A recording's frames, as they are to be shown, and what it is a recording of."""

    frames: list[ClusterSnapshot]
    recorded: str  # the backend recorded ("nvml" for a raw NVML trace)
    # Flavors derived from the recorded machine's GPUs (as the nvml backend derives them), or
    # None where the MoAI (or the user's) catalog applies: a recorded simulator or Prometheus.
    catalog: Catalog | None


def load_recording(path: Path) -> Recording:
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"recording {path}: cannot read it ({error})") from None
    decoded: list[tuple[int, object]] = []
    for number, text in enumerate(lines, start=1):
        if text.strip():
            try:
                decoded.append((number, json.loads(text)))
            except (ValueError, RecursionError) as error:
                raise _not_a_sample(path, number, error) from None
    if not decoded:
        raise UsageError(f"recording {path}: no samples in it; record one with 'moai-tui record'")
    raw = [data for _, data in decoded if isinstance(data, dict) and "util" in data]
    frames = []
    try:
        processes = iter(trace_processes(raw)) if raw else iter(())
    except (ValueError, TypeError) as error:
        raise _not_a_sample(path, decoded[0][0], error) from None
    static: dict | None = None
    for number, data in decoded:
        try:
            if isinstance(data, dict) and "util" in data and "nodes" not in data:
                if static is None:
                    static = _static_beside(path)
                host = path.stem.split("-")[0]
                frames.append(nvml_trace_frame(data, static, host, next(processes)))
            else:
                frames.append(snapshot_from_dict(data, f"line {number}"))
        except (ValueError, TypeError, KeyError, RecursionError) as error:
            raise _not_a_sample(path, number, error) from None
    return _as_replayed(frames)


def _not_a_sample(path: Path, number: int, error: Exception) -> UsageError:
    return UsageError(
        f"recording {path}, line {number}: not a moai-tui or NVML trace sample ({error})"
    )


def _as_replayed(frames: list[ClusterSnapshot]) -> Recording:
    """Frames as a replay shows them: named "replay"; never local (their pids are not this
    machine's processes); one machine's recorded GPUs attached to the user's device."""
    first = frames[0]
    one_machine = first.local and len(first.nodes) == 1 and bool(first.nodes[0].gpus)
    catalog = None
    if one_machine:
        gpus = first.nodes[0].gpus
        mib = next((g.mem_total_mib for g in gpus if g.mem_total_mib), 0)
        source = f"(derived from the recording of {first.host or first.nodes[0].name})"
        catalog = derived_catalog(len(gpus), mib, gpus[0].model, source)
    shown = [
        replace(f, backend="replay", local=False, attached=f.attached or one_machine)
        for f in frames
    ]
    return Recording(shown, first.backend, catalog)


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
    scheduler = None

    def __init__(
        self,
        recording: Recording,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        source: str = "",
    ):
        self.frames = recording.frames
        self.recording = recording
        self.speed = speed
        self.clock = clock
        self.source = source
        self.started = clock()
        self.span = self.frames[-1].time - self.frames[0].time
        self._status = self._status_at(0.0, self.frames[0])

    @classmethod
    def from_spec(cls, spec: str) -> ReplayBackend:
        path, _, speed_text = spec.rpartition("@") if "@" in spec else (spec, "", "1")
        try:
            speed = float(speed_text)
            if not 0 < speed < math.inf:
                raise ValueError
        except ValueError:
            raise UsageError(f"replay speed {speed_text!r} must be a positive number") from None
        return cls(load_recording(Path(path)), speed, source=Path(path).name)

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

    def _status_at(self, elapsed: float, frame: ClusterSnapshot) -> ReplayStatus:
        lap = 1 + int(elapsed * self.speed // self.span) if self.span > 0 else 1
        return ReplayStatus(
            self.source,
            self.recording.recorded,
            frame.time - self.frames[0].time,
            self.span,
            lap,
            self.speed,
        )

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        elapsed = self.clock() - self.started
        frame = self.frame_at(elapsed)
        self._status = self._status_at(elapsed, frame)
        return frame

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        pass  # a recording holds what it holds

    def local_catalog(self) -> Catalog | None:
        return self.recording.catalog

    def replay_status(self) -> ReplayStatus:
        """Where the frame last sampled stands in the recording."""
        return self._status

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> None:
        return None

    def pinned_state(self) -> None:
        return None

    def close(self) -> None:
        pass
