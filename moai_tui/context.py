"""What every command needs: config, flavor catalog, state store, and a backend factory."""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from moai_tui.catalog import Catalog, load_catalog
from moai_tui.config import Config, config_dir, load_config
from moai_tui.model import ClusterSnapshot, Flavor, Gpu, JobRequest
from moai_tui.state import DEFAULT_FLAVOR, StateStore

if TYPE_CHECKING:
    from moai_tui.backends import Backend, HistoryPoints

CATALOG_ENV = "MOAI_TUI_CATALOG"


@dataclass
class Context:
    backend_spec: str | None = None
    catalog_path: Path | None = None
    prometheus_url: str | None = None
    _backend: Backend | None = field(default=None, init=False, repr=False)
    # Opening a backend twice (two nvmlInit, two sockets) from two threads must not happen:
    # cached_property takes no lock from Python 3.12 on.
    _open_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # One backend call at a time: the dashboard's poller and its actions, and an exporter's
    # concurrent scrapes, share one HTTP connection (Prometheus) or NVML's per-process caches.
    _call_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # The nodes the caller shows GPU by GPU and those whose readings it shows (None: every
    # node), and what the backend was last told (it starts on every node): a wish is kept here
    # and handed over with the next sample, under the call lock, so that the UI thread never
    # waits behind a slow sample to say what it shows.
    _detail: frozenset[str] | None = field(default=None, init=False, repr=False)
    _readings: frozenset[str] | None = field(default=None, init=False, repr=False)
    _told: tuple = field(default=(None, None), init=False, repr=False)
    # The nodes the user's devices stood on in the last sample (pipeline.take_sample).
    device_nodes: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    @cached_property
    def directory(self) -> Path:
        return config_dir()

    @cached_property
    def config(self) -> Config:
        return load_config(self.directory / "config.toml")

    @cached_property
    def catalog(self) -> Catalog:
        """The user's catalog file if any; else, on real GPUs, one derived from them; else MoAI's."""
        path = self.catalog_path
        if path is None and os.environ.get(CATALOG_ENV):
            path = Path(os.environ[CATALOG_ENV])
        path = path or self.config.catalog
        if path is None and (self.directory / "catalog.toml").exists():
            path = self.directory / "catalog.toml"
        if path is None:
            derived = self.backend.local_catalog()
            if derived is not None:
                return derived
        return load_catalog(path)

    @property
    def backend(self) -> Backend:
        """Opened on first use, once, whichever thread asks first."""
        with self._open_lock:
            if self._backend is None:
                from moai_tui.backends import open_backend

                self._backend = open_backend(
                    self.backend_spec or self.config.backend, self.config, self.prometheus_url
                )
            return self._backend

    @backend.setter
    def backend(self, backend: Backend) -> None:  # tests and tools bring their own
        with self._open_lock:
            self._backend = backend
            self._told = (None, None)  # a new backend starts on every node

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        """The nodes whose GPUs the caller shows one by one (None: every node, the default),
        and those whose readings it shows (Backend.set_detail), for the backend from the next
        sample on. Never blocks."""
        self._detail = None if nodes is None else frozenset(nodes)
        self._readings = None if readings is None else frozenset(readings)

    def sample(
        self, requests: Sequence[JobRequest] = (), also: Collection[str] = ()
    ) -> ClusterSnapshot:
        """The backend's sample; every caller comes through here, one call at a time. `also`:
        nodes to fetch GPU by GPU besides the caller's detail (the user's devices' nodes)."""
        backend = self.backend
        with self._call_lock:
            detail = self._detail
            wanted = None if detail is None else detail | frozenset(also)
            if (wanted, self._readings) != self._told:
                backend.set_detail(wanted, self._readings)
                self._told = (wanted, self._readings)
            return backend.sample(requests)

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> HistoryPoints | None:
        backend = self.backend
        with self._call_lock:
            return backend.history(gpus, seconds, step)

    @cached_property
    def store(self) -> StateStore:
        """A new user starts on MoAI's xLarge.512GB, or on the catalog's smallest flavor."""
        names = [f.name for f in self.catalog.flavors]
        return StateStore(self.directory, DEFAULT_FLAVOR if DEFAULT_FLAVOR in names else names[0])

    @property
    def flavors(self) -> dict[str, Flavor]:
        return {f.name: f for f in self.catalog.flavors}

    def close(self) -> None:
        """Release the backend if this command opened one (nvmlShutdown, an HTTP connection)."""
        if self._backend is not None:
            self._backend.close()
