"""The flavor catalog: data shipped in the package, or a user's file that replaces it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from moai_tui.compat import tomllib
from moai_tui.errors import UsageError
from moai_tui.model import Flavor
from moai_tui.parsing import is_number

BUILTIN = "moai.toml"


@dataclass(frozen=True)
class Catalog:
    flavors: tuple[Flavor, ...]
    gpus_per_node: int
    source: str

    def __len__(self) -> int:
        return len(self.flavors)

    def index_of(self, name: str) -> int | None:
        """1-based position of a flavor, as moreh-switch-model numbers them."""
        for position, flavor in enumerate(self.flavors, start=1):
            if flavor.name == name:
                return position
        return None

    def get(self, name: str) -> Flavor | None:
        position = self.index_of(name)
        return None if position is None else self.flavors[position - 1]

    def resolve(self, text: str) -> Flavor:
        """A flavor from what a user typed: its number in the list, or its name (any case)."""
        text = text.strip()
        if is_number(text):
            number = int(text)
            if 1 <= number <= len(self.flavors):
                return self.flavors[number - 1]
            raise UsageError(
                f"no flavor number {number}: choose 1-{len(self.flavors)} "
                "(list them with 'moai-tui switch --list')"
            )
        for flavor in self.flavors:
            if flavor.name.lower() == text.lower():
                return flavor
        raise UsageError(
            f"unknown flavor {text!r}: use a name or number from 'moai-tui switch --list', "
            f"e.g. {self.flavors[0].name!r} or 1"
        )


def derived_catalog(gpus: int, mib_per_gpu: int, model: str, source: str) -> Catalog:
    """Flavors for one machine's GPUs: 1, 2, 4, 8 ... and all of them, named after the model
    and the memory ("2xH200.280GB"). `model` is the device name as the driver reports it."""
    short = re.sub(r"[^A-Za-z0-9._-]", "-", model.replace("NVIDIA ", "")) or "GPU"
    sizes = sorted({n for n in (1, 2, 4, 8, 16) if n <= gpus} | {gpus})
    flavors = tuple(
        Flavor(f"{n}x{short}.{n * mib_per_gpu // 1024}GB", n, 1, mib_per_gpu) for n in sizes
    )
    return Catalog(flavors, gpus, source)


def _field(entry: dict, key: str, where: str) -> int:
    value = entry.get(key)
    if type(value) is not int or value <= 0:
        raise UsageError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


def parse_catalog(text: str, source: str) -> Catalog:
    """Validate a catalog document; every error names the source, the entry and the reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"flavor catalog {source}: not valid TOML ({error})") from None
    mib_per_gpu = _field(data, "mib_per_gpu", f"flavor catalog {source}")
    gpus_per_node = _field(data, "gpus_per_node", f"flavor catalog {source}")
    entries = data.get("flavors")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"flavor catalog {source}: needs a non-empty 'flavors' list")
    flavors: list[Flavor] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"flavor catalog {source}: flavor #{number}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: must be a table with name, gpus and nodes")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "*|\n\t"):
            raise UsageError(f"{where}: 'name' must be a non-empty string without '*', '|' or tabs")
        where = f"{where} ({name!r})"
        if name.lower() in seen:
            raise UsageError(f"{where}: name appears twice")
        seen.add(name.lower())
        gpus = _field(entry, "gpus", where)
        nodes = _field(entry, "nodes", where)
        if nodes > gpus:
            raise UsageError(f"{where}: more nodes ({nodes}) than GPUs ({gpus})")
        if -(-gpus // nodes) > gpus_per_node:
            raise UsageError(
                f"{where}: {gpus} GPUs do not fit on {nodes} node(s) of {gpus_per_node} GPUs"
            )
        per_gpu = _field(entry, "mib_per_gpu", where) if "mib_per_gpu" in entry else mib_per_gpu
        flavors.append(Flavor(name, gpus, nodes, per_gpu))
    return Catalog(tuple(flavors), gpus_per_node, source)


def load_catalog(path: Path | None = None) -> Catalog:
    """The user's catalog file when given, else the built-in MoAI list."""
    if path is None:
        # A path beside this file, not importlib.resources: that import alone costs 10 ms of
        # every `smi`.
        text = (Path(__file__).parent / "catalogs" / BUILTIN).read_text("utf-8")
        return parse_catalog(text, f"(built-in {BUILTIN})")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"flavor catalog {path}: cannot read it ({error})") from None
    return parse_catalog(text, str(path))


def machine_catalog(gpus: int, mib_per_gpu: int, model: str, source: str) -> Catalog:
    """A machine's own flavors (`derived_catalog`), under the MoAI Platform's names where its GPU
    is the platform's (an MI250 GCD, 65520 MiB): an 8-GCD node then offers Small.64GB ...
    xLarge.512GB, as moreh-switch-model lists them."""
    derived = derived_catalog(gpus, mib_per_gpu, model, source)
    moai = load_catalog()
    if mib_per_gpu != moai.flavors[0].mib_per_gpu:
        return derived
    names = {f.gpus: f.name for f in moai.flavors if f.nodes == 1}
    flavors = tuple(
        Flavor(names.get(f.gpus, f.name), f.gpus, f.nodes, f.mib_per_gpu) for f in derived.flavors
    )
    return Catalog(flavors, derived.gpus_per_node, source)
