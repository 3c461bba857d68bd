"""Shared fixtures: an isolated config dir per test, and helpers to run the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Recordings and reference outputs the tests read, carried in the project: a clone has no
# ../shared beside it.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FROZEN = "1780000000.0"  # a fixed simulator time for reproducible numbers


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "config"
    monkeypatch.setenv("MOAI_TUI_CONFIG_DIR", str(directory))
    monkeypatch.setenv("MOAI_TUI_SIM_TIME", FROZEN)
    monkeypatch.delenv("MOREH_VISIBLE_DEVICE", raising=False)
    monkeypatch.delenv("MOAI_TUI_CATALOG", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return directory


def moai_exe() -> str:
    exe = shutil.which("moai-tui")
    assert exe, "moai-tui is not installed: run pip install -e '.[test]'"
    return exe


def run_cli(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 60):
    """Run the installed `moai-tui` console script as a user would."""
    return subprocess.run(
        [moai_exe(), *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def python_cli(*args: str, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "moai_tui", *args], capture_output=True, text=True, **kwargs
    )
