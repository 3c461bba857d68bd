"""Where moai-tui keeps its files, and the optional config file (read, never written).

Every value of config.toml is checked for its type and range when the file is read: a wrong one
is one line naming the key, never a traceback and never a silently different meaning (the string
"false" is not a boolean).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from moai_tui.compat import tomllib
from moai_tui.errors import UsageError

CONFIG_DIR_ENV = "MOAI_TUI_CONFIG_DIR"
MIN_INTERVAL = 0.25  # seconds between dashboard refreshes, at the fastest
MAX_INTERVAL = 10.0  # and at the slowest (the dashboard's `+` stops there too)
MAX_TIMEOUT = 300.0  # seconds a Prometheus query may take, at most
SECRET_KEYS = {"token", "password"}  # their values are never printed, even when wrong


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("moai-tui"))


@dataclass(frozen=True)
class PrometheusSettings:
    """`[prometheus]` of config.toml; the MOAI_TUI_PROMETHEUS_* variables override them."""

    url: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 3.0
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class SlurmSettings:
    """`[slurm]`: how often to ask slurmctld, and what `moai-tui run` adds to srun."""

    interval: float = 5.0  # seconds between polls of slurmctld
    timeout: float = 5.0  # seconds a Slurm command may take before the sample fails
    partition: str | None = None
    account: str | None = None
    time: str | None = None  # srun --time, e.g. "2:00:00"
    qos: str | None = None
    srun_options: tuple[str, ...] = ()  # any other srun options, e.g. ["--exclusive"]

    def srun_arguments(self) -> list[str]:
        named = (("partition", self.partition), ("account", self.account))
        named += (("time", self.time), ("qos", self.qos))
        return [f"--{key}={value}" for key, value in named if value] + list(self.srun_options)


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
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)


def check_interval(value: float, what: str) -> float:
    """A refresh interval the dashboard can keep: finite, MIN_INTERVAL to MAX_INTERVAL."""
    if not (isinstance(value, (int, float)) and math.isfinite(value)) or isinstance(value, bool):
        raise UsageError(f"{what} must be a number of seconds, got {value!r}")
    if not MIN_INTERVAL <= value <= MAX_INTERVAL:
        raise UsageError(
            f"{what} must be {MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds, got {value:g}"
        )
    return float(value)


class _Table:
    """One table of the file, read key by key with the key's expected type."""

    def __init__(self, data: dict, prefix: str, source: Path):
        self.data = data
        self.prefix = prefix
        self.source = source

    def fail(self, key: str, expected: str) -> UsageError:
        value = self.data[key]
        shown = f"a {type(value).__name__}" if key in SECRET_KEYS else repr(value)
        return UsageError(
            f"config file {self.source}: '{self.prefix}{key}' must be {expected}, got {shown}"
        )

    def text(self, key: str, default: str | None) -> str | None:
        value = self.data.get(key, default)
        if key in self.data and (not isinstance(value, str) or not value.strip()):
            raise self.fail(key, "a non-empty string")
        return value

    def integer(self, key: str, default: int, low: int | None = None) -> int:
        value = self.data.get(key, default)
        if key in self.data and (type(value) is not int or (low is not None and value < low)):
            raise self.fail(key, "an integer" if low is None else f"an integer >= {low}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.data.get(key, default)
        if key in self.data and not (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and low <= value <= high
        ):
            raise self.fail(key, f"a number from {low:g} to {high:g}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if key in self.data and not isinstance(value, bool):
            raise self.fail(key, "true or false (no quotes)")
        return value

    def options(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(o, str) and o.startswith("-") for o in value
        ):
            raise self.fail(key, 'a list of options like ["--exclusive"]')
        return tuple(value)

    def only(self, keys) -> None:
        """A key the table does not have is a typo that would silently change nothing."""
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            raise UsageError(
                f"config file {self.source}: unknown key '{self.prefix}{unknown[0]}' "
                f"(known: {', '.join(sorted(keys))})"
            )

    def table(self, key: str) -> _Table:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "a table ([" + key + "])")
        return _Table(value, f"{key}.", self.source)


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
    top = _Table(data, "", path)
    sim = top.table("simulator")
    prom = top.table("prometheus")
    catalog = top.text("catalog", None)
    slurm = top.table("slurm")
    slurm.only(SlurmSettings.__dataclass_fields__)
    for key in ("partition", "account", "time", "qos"):
        if str(slurm.data.get(key, "")).startswith("-"):
            raise slurm.fail(key, "a value, not an option")
    return Config(
        backend=top.text("backend", default.backend),
        interval=top.number("interval", default.interval, MIN_INTERVAL, MAX_INTERVAL),
        theme=top.text("theme", None),
        catalog=Path(catalog).expanduser() if catalog else None,
        sim_seed=sim.integer("seed", default.sim_seed),
        sim_nodes=sim.integer("nodes", default.sim_nodes, low=1),
        sim_load=sim.number("load", default.sim_load, 0.0, 1.0),
        version_current=sim.text("version", default.version_current),
        version_latest=sim.text("latest_version", default.version_latest),
        prometheus=PrometheusSettings(
            url=prom.text("url", None),
            token=prom.text("token", None),
            username=prom.text("username", None),
            password=prom.text("password", None),
            timeout=prom.number("timeout", 3.0, 0.1, MAX_TIMEOUT),
            insecure_skip_verify=prom.boolean("insecure_skip_verify", False),
        ),
        slurm=SlurmSettings(
            interval=slurm.number("interval", 5.0, 1.0, 3600.0),
            timeout=slurm.number("timeout", 5.0, 1.0, MAX_TIMEOUT),
            partition=slurm.text("partition", None),
            account=slurm.text("account", None),
            time=slurm.text("time", None),
            qos=slurm.text("qos", None),
            srun_options=slurm.options("srun_options"),
        ),
    )
