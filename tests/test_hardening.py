"""State under fire, and the security promises: loopback by default, private files, no
credentials in anything printed."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import moai_exe, run_cli

from moai_tui.state import parse_state

FLAVORS = ["Small.64GB", "Medium.128GB", "4xLarge.2048GB", "48xLarge.24576GB"]
WRITER = (
    "import sys\n"
    "from moai_tui.cli import main\n"
    "names = sys.argv[1:]\n"
    "i = 0\n"
    "while True:\n"
    "    main(['switch', '-M', names[i % len(names)]])\n"
    "    main(['device', '--add', names[i % 3]]); main(['device', '--rm', '1'])\n"
    "    i += 1\n"
)


def test_sigkill_mid_write_never_leaves_a_torn_file(config_dir):
    """Kill writers at random moments, many times: the file is always one of the states
    written, never half of one."""
    run_cli("switch", "-M", "Small.64GB")
    path = config_dir / "state.toml"
    rng = random.Random(7)
    for _ in range(25):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, *FLAVORS],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.15, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        state = parse_state(path.read_text())  # raises if torn
        assert state.device(state.current).flavor in FLAVORS
        assert state.device(0) is not None and len(state.devices) <= 5
    assert run_cli("switch", "-M", "2").returncode == 0  # a killed writer left no lock held


def test_full_disk_refuses_cleanly(config_dir, tmp_path):
    """A config dir on a full filesystem: a clear error, the old file intact, no debris."""
    config_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(config_dir)], check=True)
    try:
        assert run_cli("switch", "-M", "Large.256GB").returncode == 0
        before = (config_dir / "state.toml").read_bytes()
        filler = config_dir / "filler"
        try:
            with open(filler, "wb") as handle:
                while True:
                    handle.write(b"x" * 4096)
                    handle.flush()
        except OSError:  # the disk is full now
            pass
        result = run_cli("switch", "-M", "48xLarge.24576GB")
        assert result.returncode == 1
        assert "cannot save state" in result.stderr and "No space left" in result.stderr
        assert "Traceback" not in result.stderr
        assert (config_dir / "state.toml").read_bytes() == before
        assert not list(config_dir.glob(".state.*.tmp"))
    finally:
        subprocess.run(["umount", str(config_dir)], check=True)


def test_files_are_private(config_dir):
    run_cli("switch", "-M", "2")
    assert config_dir.stat().st_mode & 0o777 == 0o700
    assert (config_dir / "state.toml").stat().st_mode & 0o777 == 0o600


def test_exporter_binds_loopback_by_default(config_dir):
    exporter = subprocess.Popen(
        [moai_exe(), "exporter", "--backend", "simulator", "--node", "node00"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = exporter.stdout.readline()
        assert "http://127.0.0.1:9400/metrics" in line
        listening = [
            c.laddr
            for c in psutil.Process(exporter.pid).net_connections()
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening)
    finally:
        exporter.terminate()
        exporter.wait(10)


def test_credentials_never_printed(config_dir):
    secret = "tok-" + "9" * 12
    failures = [
        run_cli(
            "smi",
            "--backend",
            "prometheus",
            "--prometheus-url",
            "http://alice:hunter2@127.0.0.1:9/prom",
        ),
        run_cli(
            "smi",
            "--backend",
            "prometheus",
            "--prometheus-url",
            "http://127.0.0.1:9",
            env={"MOAI_TUI_PROMETHEUS_TOKEN": secret},
        ),
        run_cli("smi", "--backend", "prometheus", "--prometheus-url", "ftp://bob:pw@x"),
    ]
    for result in failures:
        assert result.returncode != 0 and result.stderr.count("\n") == 1
        for word in ("hunter2", "alice", secret, "bob:pw"):
            assert word not in result.stdout + result.stderr


def test_run_never_uses_a_shell():
    source = open(os.path.join(os.path.dirname(__file__), "..", "moai_tui", "launcher.py")).read()
    assert not re.search(r"shell\s*=\s*True|os\.system|os\.popen", source)


def test_reliability_table_names_only_tests_that_exist():
    tests = Path(__file__).parent
    defined = set()
    for source in tests.rglob("test_*.py"):
        defined |= set(re.findall(r"def (test_\w+)", source.read_text()))
    table = (tests.parent / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(?:[\w/]+\.py::)?(test_\w+)`", table))
    assert named and not named - defined
