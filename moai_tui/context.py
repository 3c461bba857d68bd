"""What every command needs: config, flavor catalog, state store, and a backend factory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from moai_tui.catalog import Catalog, load_catalog
from moai_tui.config import Config, config_dir, load_config
from moai_tui.model import Flavor
from moai_tui.state import DEFAULT_FLAVOR, StateStore

CATALOG_ENV = "MOAI_TUI_CATALOG"


@dataclass
class Context:
    backend_spec: str | None = None
    catalog_path: Path | None = None
    prometheus_url: str | None = None

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

    @cached_property
    def backend(self):
        from moai_tui.backends import open_backend

        return open_backend(
            self.backend_spec or self.config.backend, self.config, self.prometheus_url
        )

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
        if "backend" in self.__dict__:
            self.backend.close()
