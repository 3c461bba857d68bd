"""Where moai-tui keeps its files, and the optional config file (read, never written)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from moai_tui.compat import tomllib
from moai_tui.errors import UsageError

CONFIG_DIR_ENV = "MOAI_TUI_CONFIG_DIR"
MIN_INTERVAL = 0.25  # seconds between dashboard refreshes, at the fastest


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("moai-tui"))


@dataclass(frozen=True)
class Config:
    backend: str = "auto"
    interval: float = 1.0
    theme: str | None = None
    catalog: Path | None = None
    sim_seed: int = 0
    sim_nodes: int = 64
    sim_load: float = 0.7
    version_current: str = "24.5.0"
    version_latest: str = "24.5.0"
    prometheus_url: str | None = None
    prometheus: dict = field(default_factory=dict)


def _typed(table: dict, key: str, kind: type | tuple, source: Path, default):
    value = table.get(key, default)
    if value is not default and not isinstance(value, kind) or isinstance(value, bool):
        raise UsageError(f"config file {source}: '{key}' has the wrong type ({value!r})")
    return value


def load_config(path: Path | None = None) -> Config:
    path = path or config_dir() / "config.toml"
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(
            f"config file {path}: cannot read it ({error}); fix or remove it"
        ) from None
    default = Config()
    sim = data.get("simulator", {})
    prom = data.get("prometheus", {})
    if not isinstance(sim, dict) or not isinstance(prom, dict):
        raise UsageError(f"config file {path}: [simulator] and [prometheus] must be tables")
    catalog = _typed(data, "catalog", str, path, None)
    nodes = _typed(sim, "nodes", int, path, default.sim_nodes)
    load = _typed(sim, "load", (int, float), path, default.sim_load)
    if nodes < 1 or not 0 <= load <= 1:
        raise UsageError(f"config file {path}: simulator nodes must be >= 1 and load in 0..1")
    return Config(
        backend=_typed(data, "backend", str, path, default.backend),
        interval=float(_typed(data, "interval", (int, float), path, default.interval)),
        theme=_typed(data, "theme", str, path, None),
        catalog=Path(catalog).expanduser() if catalog else None,
        sim_seed=_typed(sim, "seed", int, path, default.sim_seed),
        sim_nodes=nodes,
        sim_load=float(load),
        version_current=_typed(sim, "version", str, path, default.version_current),
        version_latest=_typed(sim, "latest_version", str, path, default.version_latest),
        prometheus_url=_typed(prom, "url", str, path, None),
        prometheus=prom,
    )
