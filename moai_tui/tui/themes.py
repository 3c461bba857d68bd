"""Theme files (TOML, in themes/) validated and turned into Textual themes."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from moai_tui.compat import tomllib
from moai_tui.config import config_dir
from moai_tui.errors import UsageError

COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
)
DEFAULT_THEME = "moai-dark"


def theme_dirs() -> list[Path]:
    """The user's own themes first, then ours: a checkout's themes/, or where pip put them."""
    beside_package = Path(__file__).resolve().parents[2]
    dirs = [
        config_dir() / "themes",
        beside_package / "themes",
        beside_package / "share" / "moai-tui" / "themes",  # pip install --target
    ]
    recorded = recorded_theme_dir()
    return dirs + [recorded] if recorded else dirs


def recorded_theme_dir() -> Path | None:
    """Where pip put the wheel's themes under a venv or ~/.local (--user): the distribution's file
    list says, where sys.prefix is wrong for --user."""
    try:
        files = importlib.metadata.distribution("moai-tui").files or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == f"{DEFAULT_THEME}.toml" and file.parent.name == "themes":
            return Path(file.locate()).resolve().parent
    return None


def parse_theme(text: str, source: str) -> Theme:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"theme file {source}: not valid TOML ({error})") from None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"theme file {source}: needs a 'name'")
    if "primary" not in data:
        raise UsageError(f"theme file {source}: needs a 'primary' colour")
    colors = {}
    for key in COLOR_KEYS:
        if key in data:
            value = data[key]
            try:
                Color.parse(value)
            except (ColorParseError, TypeError, ValueError):
                raise UsageError(
                    f"theme file {source}: '{key}' is not a colour ({value!r}); use e.g. '#4C9AFF'"
                ) from None
            colors[key] = value
    unknown = set(data) - set(COLOR_KEYS) - {"name", "dark"}
    if unknown:
        raise UsageError(f"theme file {source}: unknown keys {sorted(unknown)}")
    return Theme(name=name, dark=bool(data.get("dark", True)), **colors)


def load_themes() -> dict[str, Theme]:
    """Every theme file found, by name; the first found wins, so a user's file overrides ours."""
    themes: dict[str, Theme] = {}
    for directory in theme_dirs():
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else ():
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise UsageError(f"theme file {path}: cannot read it ({error})") from None
            theme = parse_theme(text, str(path))
            themes.setdefault(theme.name, theme)
    return themes
