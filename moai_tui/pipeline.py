"""The one path from the user's state to what they see: state -> sample -> clean -> views.

`smi` (all its forms), `device --list`, the dashboard and the exporter all call `take_sample`,
so they agree on the current device, on a pinned snapshot's devices, on what was cleaned away,
and on every number. No textual, no rich: `smi` imports this.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from moai_tui.context import Context
from moai_tui.model import ClusterSnapshot, Flavor
from moai_tui.state import State, prune_dead_jobs, visible_device
from moai_tui.validate import clean_snapshot
from moai_tui.view import DeviceView, device_nodes, device_views


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
    # How long the backend took to answer (seconds): the data was that old when it landed, and
    # a refresh slower than the interval is not live.
    took_s: float | None = None

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
    # The devices' nodes are fetched GPU by GPU whatever the caller shows (set_detail): a
    # device's memory and utilization never come from a summary. They are the last sample's;
    # where the cluster moved under a device (a node came or went), it is asked again at once.
    started = time.monotonic()
    snapshot = ctx.sample(state.jobs, also=ctx.device_nodes)
    needed = device_nodes(state.devices, flavors, snapshot)
    summarised = {n.name for n in snapshot.nodes if n.summary is not None and n.up}
    if needed & summarised:
        snapshot = ctx.sample(state.jobs, also=needed)
        needed = device_nodes(state.devices, flavors, snapshot)
    ctx.device_nodes = frozenset(needed)
    took = time.monotonic() - started
    snapshot, invalid = clean_snapshot(snapshot)
    views = tuple(device_views(state.devices, current, flavors, snapshot))
    return Sample(
        snapshot, state, views, invalid=invalid, current=current, flavors=flavors, took_s=took
    )
