"""The last few minutes of utilization and memory, per device and per node: what the dashboard's
sparklines draw. Bounded, and in whole percents (a sparkline level is 12.5 %)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from moai_tui.model import ClusterSnapshot
from moai_tui.view import DeviceView, node_util


def percent(value: float | None) -> int | None:
    return None if value is None else round(value)


class History:
    def __init__(self, length: int = 600):
        self.length = length
        self.devices: dict[int, deque] = {}
        self.nodes: dict[str, deque] = {}

    def add(self, views: Sequence[DeviceView], snapshot: ClusterSnapshot) -> None:
        for view in views:
            track = self.devices.setdefault(view.device, deque(maxlen=self.length))
            mem = (
                100.0 * view.memory_used_mib / view.memory_total_mib
                if view.memory_used_mib is not None and view.memory_total_mib
                else None
            )
            track.append((percent(view.utilization), percent(mem)))
        for node in snapshot.nodes:
            self.nodes.setdefault(node.name, deque(maxlen=self.length)).append(
                percent(node_util(node))
            )

    def preload(self, device: int, points: Sequence[tuple[float | None, float | None]]) -> None:
        track = self.devices.setdefault(device, deque(maxlen=self.length))
        track.extend((percent(util), percent(mem)) for util, mem in points)
