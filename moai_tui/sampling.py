"""One dashboard sample: the state, the backend's snapshot, what the user sees of it, and the
host. No textual here: the first sample is taken while the UI is still being imported."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from moai_tui.context import Context
from moai_tui.model import ClusterSnapshot
from moai_tui.state import State, prune_dead_jobs
from moai_tui.validate import clean_snapshot
from moai_tui.view import DeviceView, device_views


@dataclass(frozen=True)
class Sample:
    snapshot: ClusterSnapshot
    state: State
    views: tuple[DeviceView, ...]
    host_cpu: float | None = None
    host_mem: float | None = None
    processes: dict = field(default_factory=dict)  # pid -> (cpu %, rss bytes), local only
    invalid: str | None = None  # what the backend got wrong, for the header


@dataclass(frozen=True)
class Outcome:
    """A sample, or the error that stood in its way; the first one may bring history."""

    sample: Sample | None
    error: str | None = None
    history: tuple[tuple[float | None, float | None], ...] = ()


class HostProbe:
    """The host's CPU and memory and local processes' CPU% / RSS, via psutil."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.processes: dict[int, object] = {}
        psutil.cpu_percent(None)

    def host(self) -> tuple[float, float]:
        return self.psutil.cpu_percent(None), self.psutil.virtual_memory().percent

    def process(self, pid: int) -> tuple[float, int] | None:
        process = self.processes.get(pid)
        try:
            if process is None:
                process = self.processes[pid] = self.psutil.Process(pid)
                process.cpu_percent(None)  # the first reading primes the counter
            with process.oneshot():
                return process.cpu_percent(None), process.memory_info().rss
        except self.psutil.Error:
            self.processes.pop(pid, None)
            return None


class Sampler:
    """Takes samples for the dashboard; used from one thread at a time."""

    def __init__(self, ctx: Context, host_probe: HostProbe | None):
        self.ctx = ctx
        self.host_probe = host_probe
        self._state_seen: tuple[float | None, State] | None = None

    def take(self) -> Outcome:
        try:
            state = prune_dead_jobs(self._load_state())
            snapshot, invalid = clean_snapshot(self.ctx.backend.sample(state.jobs))
            views = tuple(device_views(state.devices, state.current, self.ctx.flavors, snapshot))
            host_cpu = host_mem = None
            processes = {}
            if self.host_probe is not None:
                host_cpu, host_mem = self.host_probe.host()
                if snapshot.local:  # only then are the pids this machine's processes
                    for job in snapshot.jobs:
                        stats = self.host_probe.process(job.pid)
                        if stats is not None:
                            processes[job.pid] = stats
            return Outcome(Sample(snapshot, state, views, host_cpu, host_mem, processes, invalid))
        except Exception as error:  # any backend failure: keep the last data, say why
            return Outcome(None, f"{type(error).__name__}: {error}")

    def _load_state(self) -> State:
        """Re-read the state file only when it changed (a switch in another terminal)."""
        mtime = self.ctx.store.mtime()
        if self._state_seen is None or self._state_seen[0] != mtime or mtime is None:
            self._state_seen = (mtime, self.ctx.store.load())
        return self._state_seen[1]

    def take_first(self, history_s: float, step: float) -> Outcome:
        """The first sample, with the current device's recent history where the backend keeps
        one (Prometheus): the graphs are full the moment the dashboard opens."""
        outcome = self.take()
        if outcome.sample is None:
            return outcome
        current = next((v for v in outcome.sample.views if v.current), None)
        nodes = list(dict.fromkeys(g.node for g in current.gpus)) if current else []
        try:
            points = self.ctx.backend.history(nodes, history_s, step)
        except Exception:  # history is a nicety: the live sample stands without it
            return outcome
        return outcome if points is None else Outcome(outcome.sample, history=tuple(points))

    def first(self, history_s: float, step: float) -> Future:
        """Start the first sample now, on its own thread, to overlap the UI's start-up."""
        future: Future = Future()
        threading.Thread(
            target=lambda: future.set_result(self.take_first(history_s, step)),
            name="first-sample",
            daemon=True,
        ).start()
        return future
