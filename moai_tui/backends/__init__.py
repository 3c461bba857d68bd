"""Backends: where samples of the cluster come from. One interface, no UI.

A backend's `sample(requests)` returns a ClusterSnapshot; `requests` are the user's jobs from the
state file, which the simulator places and real backends match to processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from moai_tui.config import Config
from moai_tui.errors import UsageError
from moai_tui.model import ClusterSnapshot, JobRequest

NAMES = ("auto", "simulator", "snapshot:FILE")


class Backend(Protocol):
    name: str
    # A line for the user about how the backend was chosen (e.g. a fallback), or None.
    notice: str | None

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot: ...

    def close(self) -> None: ...


def simulator_from(config: Config):
    from moai_tui.backends.simulator import SimulatorBackend

    return SimulatorBackend(
        seed=config.sim_seed,
        nodes=config.sim_nodes,
        load=config.sim_load,
        version_current=config.version_current,
        version_latest=config.version_latest,
    )


def open_backend(spec: str, config: Config) -> Backend:
    kind, _, argument = spec.partition(":")
    if kind in ("auto", "simulator") and not argument:
        return simulator_from(config)
    if kind == "snapshot" and argument:
        from moai_tui.backends.snapshot import SnapshotBackend

        return SnapshotBackend(argument)
    raise UsageError(f"unknown backend {spec!r}: choose one of {', '.join(NAMES)}")
