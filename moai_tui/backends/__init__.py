"""Backends: where samples of the cluster come from. One interface, no UI.

A backend's `sample(requests)` returns a ClusterSnapshot; `requests` are the user's jobs from the
state file, which the simulator places and real backends match to processes.

What only some backends can do is declared here too, and every backend answers it explicitly
(None or False where it cannot): callers ask, they never probe with getattr.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from moai_tui.config import Config
from moai_tui.errors import BackendError, UsageError
from moai_tui.model import ClusterSnapshot, Gpu, JobRequest

if TYPE_CHECKING:
    from moai_tui.backends.snapshot import Pinned
    from moai_tui.catalog import Catalog

NAMES = (
    "auto",
    "simulator",
    "nvml",
    "amdsmi",
    "prometheus",
    "slurm",
    "replay:FILE[@SPEED]",
    "snapshot:FILE",
)
# How long `auto` waits for slurmctld before it shows the simulator instead.
SLURM_PROBE_S = 2.0

# (util %, memory %) of a set of GPUs, oldest first, one point per step.
HistoryPoints = list[tuple[float | None, float | None]]


@dataclass(frozen=True)
class ReplayStatus:
    """Where a replay stands, for a header that says REPLAY instead of live."""

    source: str  # the recording's file name
    recorded: str  # the backend it recorded
    position_s: float  # seconds into the recording of the frame last shown
    length_s: float  # the recording's length in seconds; 0: one saved moment (snapshot:FILE)
    lap: int  # 1 on the first pass: a replay starts over at its end
    speed: float


class Backend(Protocol):
    name: str
    # A line for the user about how the backend was chosen (e.g. a fallback), or None.
    notice: str | None
    # The environment variable that confines a local process to some of this backend's GPUs
    # (CUDA_VISIBLE_DEVICES), where `moai-tui run` can hand them out; None where it cannot
    # (a simulated, remote or recorded cluster).
    visible_devices_env: str | None
    # The scheduler `moai-tui run` asks for an allocation ("slurm": the flavor becomes an srun
    # job), or None where run hands out this machine's GPUs itself or cannot run at all.
    scheduler: str | None

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot: ...

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        """The nodes whose GPUs the caller shows one by one; None (the default) means every
        node. A backend that can fetch less (Prometheus) then returns the other nodes as
        aggregates only (Node.summary, no GPUs); every other backend ignores it. `readings`:
        the summarised nodes whose memory, temperature and power the caller shows (None: every
        node's); the others' summaries carry their counts and utilization only."""
        ...

    def local_catalog(self) -> Catalog | None:
        """Flavors derived from the backend's own GPUs (1, 2, 4, 8 x this machine's GPU), or
        None: the user's catalog file or MoAI's built-in one applies."""
        ...

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> HistoryPoints | None:
        """(util %, memory %) of `gpus` (a device's) over the last `seconds`, every `step`
        seconds, computed as a live view of them is, where the backend keeps a history
        (Prometheus); None where it keeps none."""
        ...

    def pinned_state(self) -> Pinned | None:
        """The user's devices and flavors saved with the samples (`snapshot:FILE`), which then
        replace the state file's; None where the state file applies."""
        ...

    def replay_status(self) -> ReplayStatus | None:
        """Where a replay stands in its recording (position, length, lap, what it recorded),
        as of the last sample; a saved snapshot is a replay of length 0. Neither is ever
        live. None for a backend that is."""
        ...

    def close(self) -> None: ...


def auto_backend(config: Config, prometheus_url: str | None = None) -> Backend:
    """This machine's GPUs when NVML or amdsmi finds some; else the Slurm cluster where
    `squeue` is installed and slurmctld answers within a moment (a login node); else the
    simulator, saying why."""
    from moai_tui.backends.amd import AmdSmiBackend
    from moai_tui.backends.nvml import NvmlBackend

    reasons = []
    for local in (NvmlBackend, AmdSmiBackend):
        try:
            return local()
        except BackendError as error:
            reasons.append(str(error))
    reason = "; ".join(reasons)
    if shutil.which("squeue"):
        try:
            return slurm_from(config, prometheus_url, probe_s=SLURM_PROBE_S)
        except BackendError as error:
            reason = f"{reason}; {error}"
    simulator = simulator_from(config)
    simulator.notice = f"{reason}: showing the simulated MoAI cluster"
    return simulator


def slurm_from(config: Config, prometheus_url: str | None = None, probe_s: float | None = None):
    """The Slurm backend, with readings from Prometheus where a URL is configured. With
    `probe_s`, slurmctld must answer a first poll within that long (kept as the first sample)."""
    from moai_tui.backends.prometheus import URL_ENV, PrometheusBackend
    from moai_tui.backends.slurm import Commands, SlurmBackend

    url = prometheus_url or os.environ.get(URL_ENV) or config.prometheus.url
    metrics = PrometheusBackend.from_config(url, config.prometheus) if url else None
    timeout = config.slurm.timeout
    commands = Commands(min(timeout, probe_s) if probe_s is not None else timeout)
    try:
        backend = SlurmBackend(config.slurm, metrics, commands)
        if probe_s is not None:
            backend.allocation()
    except BackendError:
        if metrics is not None:
            metrics.close()
        raise
    commands.timeout = timeout
    return backend


def simulator_from(config: Config):
    from moai_tui.backends.simulator import SimulatorBackend

    return SimulatorBackend(
        seed=config.sim_seed,
        nodes=config.sim_nodes,
        load=config.sim_load,
        version_current=config.version_current,
        version_latest=config.version_latest,
    )


def open_backend(spec: str, config: Config, prometheus_url: str | None = None) -> Backend:
    kind, _, argument = spec.partition(":")
    if kind == "prometheus":  # "prometheus" or "prometheus:URL"
        from moai_tui.backends.prometheus import PrometheusBackend

        return PrometheusBackend.from_config(argument or prometheus_url, config.prometheus)
    if kind == "auto" and not argument:
        return auto_backend(config, prometheus_url)
    if kind == "slurm" and not argument:
        return slurm_from(config, prometheus_url)
    if kind == "simulator" and not argument:
        return simulator_from(config)
    if kind == "nvml" and not argument:
        from moai_tui.backends.nvml import NvmlBackend

        return NvmlBackend()
    if kind == "amdsmi" and not argument:
        from moai_tui.backends.amd import AmdSmiBackend

        return AmdSmiBackend()
    if kind == "replay" and argument:
        from moai_tui.backends.replay import ReplayBackend

        return ReplayBackend.from_spec(argument)
    if kind == "snapshot" and argument:
        from moai_tui.backends.snapshot import SnapshotBackend

        return SnapshotBackend(argument)
    raise UsageError(f"unknown backend {spec!r}: choose one of {', '.join(NAMES)}")
