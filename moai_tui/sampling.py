"""Dashboard sampling: the shared pipeline (pipeline.take_sample) plus the host, on the poller's
thread. No textual here: the first sample is taken while the UI is still being imported."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, replace

from moai_tui.context import Context
from moai_tui.errors import describe
from moai_tui.model import ClusterSnapshot
from moai_tui.pipeline import Sample, take_sample
from moai_tui.state import State

__all__ = ["HostProbe", "Outcome", "Sample", "Sampler"]


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

    def jobs(self, snapshot: ClusterSnapshot) -> dict[int, tuple[float, int]]:
        """CPU% / RSS of the snapshot's job pids; pids no longer in it are forgotten (a busy
        shared node sees thousands come and go)."""
        pids = {job.pid for job in snapshot.jobs}
        for gone in self.processes.keys() - pids:
            del self.processes[gone]
        stats = {}
        for pid in pids:
            reading = self.process(pid)
            if reading is not None:
                stats[pid] = reading
        return stats


class Sampler:
    """Takes samples for the dashboard; used from one thread at a time."""

    def __init__(self, ctx: Context, host_probe: HostProbe | None):
        self.ctx = ctx
        self.host_probe = host_probe
        self._state_seen: tuple[tuple[int, int, int] | None, State] | None = None

    def take(self) -> Outcome:
        try:
            sample = take_sample(self.ctx, self._load_state())
            probe = self.host_probe
            if probe is not None:
                host_cpu, host_mem = probe.host()
                # Only on a local backend are the pids this machine's processes.
                processes = probe.jobs(sample.snapshot) if sample.snapshot.local else {}
                sample = replace(sample, host_cpu=host_cpu, host_mem=host_mem, processes=processes)
            return Outcome(sample)
        except Exception as error:  # any backend failure: keep the last data, say why
            return Outcome(None, describe(error))

    def _load_state(self) -> State:
        """Re-read the state file only when it changed (a switch in another terminal). Every
        write is a new file (an atomic rename), so inode, mtime and size tell a change even
        within one coarse filesystem timestamp tick."""
        stamp = self.ctx.store.stamp()
        if self._state_seen is None or self._state_seen[0] != stamp or stamp is None:
            self._state_seen = (stamp, self.ctx.store.load())
        return self._state_seen[1]

    def take_first(self, history_s: float, step: float) -> Outcome:
        """The first sample, with the current device's recent history where the backend keeps
        one (Prometheus): the graphs are full the moment the dashboard opens."""
        outcome = self.take()
        if outcome.sample is None:
            return outcome
        current = outcome.sample.current_view()
        try:
            points = self.ctx.history(current.gpus if current else (), history_s, step)
        except Exception:  # history is a nicety: the live sample stands without it
            return outcome
        return outcome if points is None else Outcome(outcome.sample, history=tuple(points))

    def first(self, history_s: float, step: float) -> Future:
        """Start the first sample now, on its own thread, to overlap the UI's start-up. The
        future always resolves to an Outcome: whoever waits on it never waits forever."""
        future: Future = Future()

        def run() -> None:
            try:
                outcome = self.take_first(history_s, step)
            except Exception as error:
                outcome = Outcome(None, describe(error))
            future.set_result(outcome)

        threading.Thread(target=run, name="first-sample", daemon=True).start()
        return future
