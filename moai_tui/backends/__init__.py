"""Backends: where samples of the cluster come from. One interface, no UI.

A backend's `sample(requests)` returns a ClusterSnapshot; `requests` are the user's jobs from the
state file, which the simulator places and real backends match to processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from moai_tui.config import Config
from moai_tui.errors import BackendError, UsageError
from moai_tui.model import ClusterSnapshot, JobRequest

NAMES = ("auto", "simulator", "nvml", "prometheus", "replay:FILE[@SPEED]", "snapshot:FILE")


class Backend(Protocol):
    name: str
    # A line for the user about how the backend was chosen (e.g. a fallback), or None.
    notice: str | None

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot: ...

    def close(self) -> None: ...


def auto_backend(config: Config) -> Backend:
    """Real GPUs when NVML finds some, else the simulator, saying why."""
    from moai_tui.backends.nvml import NvmlBackend

    try:
        return NvmlBackend()
    except BackendError as error:
        simulator = simulator_from(config)
        simulator.notice = f"{error}: showing the simulated MoAI cluster"
        return simulator


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
        return auto_backend(config)
    if kind == "simulator" and not argument:
        return simulator_from(config)
    if kind == "nvml" and not argument:
        from moai_tui.backends.nvml import NvmlBackend

        return NvmlBackend()
    if kind == "replay" and argument:
        from moai_tui.backends.replay import ReplayBackend

        return ReplayBackend.from_spec(argument)
    if kind == "snapshot" and argument:
        from moai_tui.backends.snapshot import SnapshotBackend

        return SnapshotBackend(argument)
    raise UsageError(f"unknown backend {spec!r}: choose one of {', '.join(NAMES)}")
