"""State under fire, and the security promises: loopback by default, private files, no
credentials in anything printed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import moai_exe, run_cli

from moai_tui.state import parse_state

FLAVORS = ["Small.64GB", "Medium.128GB", "4xLarge.2048GB", "48xLarge.24576GB"]
# A writer that stops inside StateStore._write at POINT, says so on stdout, and waits to be
# killed there: "write" (half the new file written), "file" (its fsync, before the rename) or
# "dir" (the directory's fsync, after the rename).
PAUSING_WRITER = """
import os, stat, sys, time
point, flavor = sys.argv[1], sys.argv[2]
real_fsync, real_fdopen = os.fsync, os.fdopen

def inside():
    sys.stdout.write("inside\\n")
    sys.stdout.flush()
    time.sleep(60)

def fsync(fd):
    if ("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file") == point:
        inside()
    real_fsync(fd)

class HalfWriter:
    def __init__(self, handle):
        self.handle = handle
    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        inside()
    def __getattr__(self, name):
        return getattr(self.handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

def fdopen(fd, *args, **kwargs):
    handle = real_fdopen(fd, *args, **kwargs)
    return HalfWriter(handle) if point == "write" else handle

os.fsync, os.fdopen = fsync, fdopen
from moai_tui.cli import main
main(["switch", "-M", flavor])
"""


@pytest.mark.parametrize("point", ["write", "file", "dir"])
def test_sigkill_mid_write_never_leaves_a_torn_file(config_dir, point):
    """Writers killed while provably inside the write (half the bytes out, at the fsync before
    the rename, at the directory's fsync after it): the file is always the old state or the
    new one, never half of one; the next writer clears the debris and finds the lock free."""
    run_cli("switch", "-M", FLAVORS[0])
    path = config_dir / "state.toml"
    for round_number in range(3):
        before = parse_state(path.read_text()).device(0).flavor
        target = FLAVORS[(FLAVORS.index(before) + 1) % len(FLAVORS)]
        writer = subprocess.Popen(
            [sys.executable, "-c", PAUSING_WRITER, point, target],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline() == "inside\n"  # it is inside _write now
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        after = parse_state(path.read_text()).device(0).flavor  # raises if torn
        assert after == (target if point == "dir" else before), round_number
    assert run_cli("switch", "-M", "2").returncode == 0  # a killed writer left no lock held
    assert not list(config_dir.glob(".state.*.tmp"))  # and its temp file was cleared


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


# A test the reliability table names: tests/FILE.py::test_name, optionally [id,id] for some
# cases of a parametrized test.
TABLE_ENTRY = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)(?:\[([^\]]+)\])?")
ROOT = Path(__file__).resolve().parents[1]


def collected_tests(files: set[str]) -> set[str]:
    """The node ids pytest collects from `files` (parametrized cases with their ids)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {line for line in result.stdout.splitlines() if "::" in line}


def table_problems(table: str) -> list[str]:
    """What is wrong with the test column of a reliability table: rows naming no test, names
    not written as tests/FILE.py::test_name[ids], and names pytest does not collect."""
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # past the header
    if not rows:
        return ["no rows"]
    problems, wanted = [], set()
    for row in rows:
        cell = row.rstrip().removesuffix("|").rsplit("|", 1)[1]
        names = re.findall(r"`([^`]+)`", cell)
        if not names:
            problems.append(f"names no test: {row[:60]}")
        for name in names:
            match = TABLE_ENTRY.fullmatch(name)
            if not match:
                problems.append(f"{name}: not tests/FILE.py::test_name or ::test_name[id,id]")
                continue
            path, test, ids = match.groups()
            cases = [f"[{case.strip()}]" for case in ids.split(",")] if ids else [""]
            wanted |= {f"{path}::{test}{case}" for case in cases}
    collected = collected_tests({name.split("::")[0] for name in wanted})
    # An unbracketed name of a parametrized test stands for all its cases.
    parametrized = {node.split("[")[0] for node in collected if "[" in node}
    problems += [f"{name}: not collected" for name in sorted(wanted - collected - parametrized)]
    return problems


def test_reliability_table_names_only_tests_that_exist():
    """Each test docs/reliability.md names is one pytest collects, in the file named, with the
    case ids named: a renamed, moved or deleted test (or case) fails this."""
    assert table_problems((ROOT / "docs" / "reliability.md").read_text()) == []


def test_reliability_table_check_catches_wrong_names():
    real = "tests/test_hardening.py::test_files_are_private"
    table = (
        "| fault | sees | test |\n|---|---|---|\n"
        f"| fine | x | `{real}`, `tests/test_nvml.py::test_unreadable_field_shows_dash_in_that_cell_only` |\n"
        "| moved | x | `tests/test_smi.py::test_files_are_private` |\n"
        "| no case | x | `tests/tui/test_chaos.py::test_dashboard_survives[raise,melt]` |\n"
        "| file only | x | `tests/test_run.py` |\n"
        "| bare name | x | `test_files_are_private` |\n"
        "| none | x | a sentence |\n"
    )
    assert table_problems(table) == [
        "tests/test_run.py: not tests/FILE.py::test_name or ::test_name[id,id]",
        "test_files_are_private: not tests/FILE.py::test_name or ::test_name[id,id]",
        "names no test: | none | x | a sentence |",
        "tests/test_smi.py::test_files_are_private: not collected",
        "tests/tui/test_chaos.py::test_dashboard_survives[melt]: not collected",
    ]
