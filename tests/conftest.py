"""Shared fixtures: an isolated config dir per test, and helpers to run the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

# Recordings and reference outputs the tests read, carried in the project: a clone has no
# ../shared beside it.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FROZEN = "1780000000.0"  # a fixed simulator time for reproducible numbers
NO_DRIVER = Path(__file__).resolve().parent / "no_driver"


def nvidia_driver_present() -> bool:
    """Whether the real NVML loads here (a GPU machine)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


DRIVER = nvidia_driver_present()


@pytest.fixture(autouse=True)
def cpu_suite_sees_no_driver(request, monkeypatch):
    """The CPU suite's expected outputs come from the simulator, which `auto` picks where there
    is no NVIDIA driver. On a GPU machine, hide the driver from it (in this process and the
    moai-tui processes it starts) so the suite passes there too; tests/gpu sees the real one."""
    if not DRIVER or "gpu" in request.path.relative_to(Path(__file__).parent).parts[:1]:
        return

    def no_library(*_args, **_kwargs):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{NO_DRIVER}{os.pathsep}{path}" if path else str(NO_DRIVER))


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


@pytest.fixture(scope="module")
def browser():
    """Debian's headless chromium driven by Playwright (its own browser download is not used),
    one per module of `serve` tests."""
    from playwright.sync_api import sync_playwright
    from served import CHROMIUM

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real Slurm cluster on loopback for the whole session (tests/slurm_local.py): 4 nodes of
    8 fake GPUs, its own directory, ports chosen now, stopped by pid at the end."""
    import tempfile

    from slurm_local import LocalSlurm, missing_binaries

    missing = missing_binaries()
    assert not missing, f"Slurm is required (installed by .ci/run): {missing} not found"
    directory = Path(tempfile.mkdtemp(prefix="moai-slurm-"))
    cluster = LocalSlurm(directory, nodes=4, gpus=8)
    try:
        cluster.start(timeout=30)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster, config_dir, monkeypatch):
    """The session's cluster, empty of jobs before and after the test; the Slurm clients and
    `moai-tui` find it through SLURM_CONF, and config.toml picks the slurm backend."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(
        'backend = "slurm"\n[slurm]\ninterval = 1\ntimeout = 5\n'
    )
    slurm_cluster.clear()
    yield slurm_cluster
    slurm_cluster.clear()


def as_summary(node):
    """The node as a backend that only summarised it would give it (NodeSummary, no GPUs),
    computed here from its GPUs by the rules the summaries promise (view.is_free, validate's
    readings): what summarise and the views must count alike."""
    from moai_tui.model import Node, NodeSummary
    from moai_tui.view import is_free, mean

    live = [g for g in node.gpus if not g.lost]

    def total(values):
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    temps = [g.temp_c for g in live if g.temp_c is not None]
    summary = NodeSummary(
        gpus=len(node.gpus),
        free=sum(1 for g in node.gpus if is_free(g)),
        lost=len(node.gpus) - len(live),
        util=mean([g.util for g in live]),
        mem_used_mib=total(g.mem_used_mib for g in live),
        mem_total_mib=total(g.mem_total_mib for g in live),
        temp_c=max(temps) if temps else None,
        power_w=total(g.power_w for g in live),
    )
    return Node(node.name, (), node.up, node.state, node.reason, summary=summary)
