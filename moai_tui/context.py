"""What every command needs: config, flavor catalog, state store, and a backend factory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from moai_tui.catalog import Catalog, load_catalog
from moai_tui.config import Config, config_dir, load_config
from moai_tui.errors import ToolMessage
from moai_tui.model import Flavor
from moai_tui.state import State, StateStore

CATALOG_ENV = "MOAI_TUI_CATALOG"


@dataclass
class Context:
    backend_spec: str | None = None
    catalog_path: Path | None = None

    @cached_property
    def directory(self) -> Path:
        return config_dir()

    @cached_property
    def config(self) -> Config:
        return load_config(self.directory / "config.toml")

    @cached_property
    def catalog(self) -> Catalog:
        path = self.catalog_path or (
            Path(os.environ[CATALOG_ENV]) if os.environ.get(CATALOG_ENV) else None
        )
        path = path or self.config.catalog
        if path is None and (self.directory / "catalog.toml").exists():
            path = self.directory / "catalog.toml"
        return load_catalog(path)

    @cached_property
    def store(self) -> StateStore:
        return StateStore(self.directory)

    @property
    def flavors(self) -> dict[str, Flavor]:
        return {f.name: f for f in self.catalog.flavors}

    def open_backend(self):
        from moai_tui.backends import open_backend

        return open_backend(self.backend_spec or self.config.backend, self.config)


def refuse_if_in_use(state: State, device: int) -> None:
    """Refuse (with moreh-switch-model's message) while a job holds the device."""
    if state.job_on(device) is not None:
        from moai_tui.text.switch import IN_USE

        raise ToolMessage(IN_USE)
