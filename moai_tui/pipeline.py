"""The one path from the user's state to what they see: state -> sample -> clean -> views.

`smi` (all its forms), `device --list`, the dashboard and the exporter all call `take_sample`,
so they agree on the current device, on a pinned snapshot's devices, on what was cleaned away,
and on every number. No textual, no rich: `smi` imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from moai_tui.context import Context
from moai_tui.model import ClusterSnapshot, Flavor
from moai_tui.state import State, prune_dead_jobs, visible_device
from moai_tui.validate import clean_snapshot
from moai_tui.view import DeviceView, device_views


@dataclass(frozen=True)
class Sample:
    """One cleaned snapshot and the user's devices on it.

    `current` is the device commands act on: MOREH_VISIBLE_DEVICE if set, else the state's
    current one; a pinned snapshot's own current device under `snapshot:FILE`. `flavors` are the
    ones the views were sized with (the catalog's, or the pinned ones)."""

    snapshot: ClusterSnapshot
    state: State
    views: tuple[DeviceView, ...]
    host_cpu: float | None = None  # the host fields are the dashboard's (HostProbe)
    host_mem: float | None = None
    processes: dict = field(default_factory=dict)  # pid -> (cpu %, rss bytes), local only
    invalid: str | None = None  # what the backend got wrong and cleaning removed, for a header
    current: int = 0
    flavors: Mapping[str, Flavor] = field(default_factory=dict)

    def current_view(self) -> DeviceView | None:
        return next((v for v in self.views if v.current), None)


def take_sample(ctx: Context, state: State | None = None) -> Sample:
    """state -> sample -> clean -> views.

    `state` is the state file's as the caller already holds it (the dashboard keeps one until
    the file changes); None reads the file. A backend's pinned state replaces it. Raises
    MoaiError for a bad state file or MOREH_VISIBLE_DEVICE, and whatever the backend raises."""
    pinned = ctx.backend.pinned_state()
    if pinned is not None:
        state, flavors, current = pinned.state, pinned.flavors, pinned.state.current
    else:
        state = prune_dead_jobs(ctx.store.load() if state is None else state)
        flavors, current = ctx.flavors, visible_device(state)
    snapshot, invalid = clean_snapshot(ctx.sample(state.jobs))
    views = tuple(device_views(state.devices, current, flavors, snapshot))
    return Sample(snapshot, state, views, invalid=invalid, current=current, flavors=flavors)
