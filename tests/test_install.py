"""moai-tui installed from its wheel, as users install it, finds its themes in every pip scheme.

A `pip install --target` install once crashed the dashboard at start (themes were looked for
under sys.prefix only). The wheel is built from a copy of the checkout, so the repo stays clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEMES = sorted(path.stem for path in (ROOT / "themes").glob("*.toml"))
SHOW = (
    "import moai_tui; from moai_tui.tui.themes import load_themes;"
    "print(moai_tui.__file__); print(','.join(sorted(load_themes())))"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("moai_tui", "themes"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("moai_tui-*.whl")
    return built


def pip_install(python: str, *args: str, env: dict | None = None) -> None:
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", *args],
        check=True,
        capture_output=True,
        env=env,
    )


def python_says(python: str, code: str, env: dict | None = None) -> str:
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


def themes_seen(python: str, tmp_path: Path, env: dict) -> tuple[str, list[str]]:
    """Run from an empty dir with the user's config dir empty: only installed themes count."""
    env = {**env, "MOAI_TUI_CONFIG_DIR": str(tmp_path / "config")}
    done = subprocess.run(
        [python, "-c", SHOW], cwd=tmp_path, capture_output=True, text=True, env=env, check=True
    )
    where, names = done.stdout.splitlines()
    return where, names.split(",") if names else []


def test_themes_found_after_pip_install_target(wheel, tmp_path):
    target = tmp_path / "site"
    pip_install(sys.executable, "--target", str(target), str(wheel))
    where, names = themes_seen(sys.executable, tmp_path, {**os.environ, "PYTHONPATH": str(target)})
    assert where.startswith(str(target)) and names == THEMES


def test_themes_found_after_pip_install_user(wheel, tmp_path):
    # --user needs the base interpreter (a venv refuses it); textual and the rest come from the
    # environment running the tests, after the user site so that the user install is found first.
    base = str(Path(sys.base_prefix) / "bin" / "python3")
    env = {**os.environ, "PYTHONUSERBASE": str(tmp_path / "userbase")}
    env.pop("PYTHONPATH", None)
    pip_install(base, "--user", str(wheel), env=env)
    user_site = python_says(base, "import site; print(site.getusersitepackages())", env)
    path = os.pathsep.join([user_site, sysconfig.get_paths()["purelib"]])
    where, names = themes_seen(base, tmp_path, {**env, "PYTHONPATH": path})
    assert where.startswith(str(tmp_path / "userbase")) and names == THEMES


def test_themes_found_after_pip_install_into_a_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # textual and the rest from the environment running the tests, after the venv's own packages.
    site = python_says(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(site) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip_install(python, str(wheel))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where, names = themes_seen(python, tmp_path, env)
    assert where.startswith(str(venv)) and names == THEMES


def test_wheel_carries_the_serve_page(wheel):
    with zipfile.ZipFile(wheel) as built:
        assert "moai_tui/serve.html" in built.namelist()
