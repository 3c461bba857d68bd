"""A backend wrapper that misbehaves on demand, for hardening tests."""

from __future__ import annotations

import threading
from dataclasses import replace

from moai_tui.model import ClusterSnapshot, Node

MODES = ("raise", "hang", "nan", "negative", "absurd", "drop_nodes", "duplicate_gpus")


class ChaosBackend:
    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.notice = None
        self.mode: str | None = None
        self.release = threading.Event()
        self.samples = 0

    def __getattr__(self, name):  # host, now, ... of the wrapped backend
        return getattr(self.inner, name)

    def sample(self, requests=()) -> ClusterSnapshot:
        self.samples += 1
        snapshot = self.inner.sample(requests)
        mode = self.mode
        if mode == "raise":
            raise RuntimeError("chaos: backend exploded")
        if mode == "hang":
            self.release.wait(30)
            return snapshot
        if mode in ("nan", "negative", "absurd"):
            value = {"nan": float("nan"), "negative": -5.0, "absurd": 1e12}[mode]
            return replace(
                snapshot,
                nodes=tuple(
                    Node(
                        n.name,
                        tuple(
                            replace(
                                g,
                                util=value,
                                temp_c=value,
                                mem_used_mib=-1 if mode == "negative" else g.mem_used_mib,
                                power_w=value,
                            )
                            for g in n.gpus
                        ),
                        n.up,
                    )
                    for n in snapshot.nodes
                ),
            )
        if mode == "drop_nodes":
            return replace(snapshot, nodes=snapshot.nodes[::2])
        if mode == "duplicate_gpus":
            return replace(
                snapshot, nodes=tuple(Node(n.name, n.gpus + n.gpus, n.up) for n in snapshot.nodes)
            )
        return snapshot

    def close(self) -> None:
        self.release.set()
