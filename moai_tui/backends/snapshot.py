"""Backend `snapshot:FILE`: a saved `moai-tui smi --json`, rendered again exactly.

The file pins the user's devices and flavors as well as the cluster, so a bug report or a test
shows the same screen on any machine.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from moai_tui.backends import ReplayStatus
from moai_tui.codec import DecodeError, snapshot_from_dict
from moai_tui.errors import UsageError
from moai_tui.model import ClusterSnapshot, Flavor, Gpu, JobRequest
from moai_tui.state import MAX_DEVICES, Device, State

SCHEMA = "moai-tui/smi-1"


@dataclass(frozen=True)
class Pinned:
    """A saved `smi --json`: the user's devices and their flavors, and the cluster, as saved."""

    state: State
    flavors: dict[str, Flavor]
    snapshot: ClusterSnapshot


def pinned_from_dict(data: object) -> Pinned:
    """Decode a `smi --json` document; raises DecodeError naming the bad field."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DecodeError(f"not a moai-tui smi --json document (schema must be {SCHEMA!r})")
    devices, flavors = [], {}
    entries = data.get("devices")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_DEVICES:
        raise DecodeError(f"devices: expected a list of 1 to {MAX_DEVICES} devices")
    for i, entry in enumerate(entries):
        try:
            flavor = Flavor(
                str(entry["flavor"]),
                int(entry["gpus"]),
                int(entry["nodes"]),
                int(entry["mib_per_gpu"]),
            )
            devices.append(Device(int(entry["id"]), flavor.name))
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise DecodeError(f"devices[{i}]: missing or malformed {error}") from None
        if min(flavor.gpus, flavor.nodes, flavor.mib_per_gpu) <= 0:
            raise DecodeError(f"devices[{i}]: gpus, nodes and mib_per_gpu must be positive")
        flavors[flavor.name] = flavor
    ids = [d.id for d in devices]
    if len(set(ids)) != len(ids) or any(not 0 <= i < MAX_DEVICES for i in ids):
        raise DecodeError(f"devices: ids must be distinct, 0-{MAX_DEVICES - 1}, got {ids}")
    current = data.get("current_device")
    if current not in [d.id for d in devices]:
        raise DecodeError(f"current_device: {current!r} is not one of the devices")
    snapshot = snapshot_from_dict(data.get("cluster"), "cluster")
    return Pinned(State(tuple(devices), current), flavors, snapshot)


def load_pinned(path: str) -> Pinned:
    try:
        data = json.loads(Path(path).read_text("utf-8"))
        return pinned_from_dict(data)
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"snapshot file {path}: cannot read it ({error})") from None
    except (ValueError, RecursionError) as error:  # json's errors and DecodeError
        raise UsageError(
            f"snapshot file {path}: not a saved 'moai-tui smi --json' ({error}); save one again"
        ) from None


class SnapshotBackend:
    name = "snapshot"
    notice = None
    visible_devices_env = None  # a saved cluster cannot run anything
    scheduler = None

    def __init__(self, path: str):
        self.pinned = load_pinned(path)
        self.source = Path(path).name

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        return self.pinned.snapshot

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        pass  # a saved moment holds what it holds

    def local_catalog(self) -> None:
        return None  # the pinned flavors come with pinned_state()

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> None:
        return None

    def pinned_state(self) -> Pinned:
        return self.pinned

    def replay_status(self) -> ReplayStatus:
        """One saved moment, never live: a replay of length 0."""
        return ReplayStatus(self.source, self.pinned.snapshot.backend, 0.0, 0.0, 1, 1.0)

    def close(self) -> None:
        pass
