"""`moai-tui run`: real launcher and child processes on a fake 4-GPU NVML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli

from moai_tui.state import parse_state

HERE = Path(__file__).parent
GPUS = "4"


def moai(*args: str, **kwargs) -> subprocess.Popen:
    """`moai-tui ARGS` with the fake NVML, as a real process."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "fake_nvml_main.py"), GPUS, "--", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def moai_done(*args: str) -> subprocess.CompletedProcess:
    process = moai(*args)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def child_script(report: Path, seconds: float) -> list[str]:
    """A child that reports its environment and pid, then sleeps."""
    code = (
        f"import os, json, time; json.dump({{'cvd': os.environ['CUDA_VISIBLE_DEVICES'], "
        f"'pid': os.getpid(), 'job': os.environ['MOAI_TUI_JOB_ID']}}, "
        f"open({str(report)!r}, 'w')); time.sleep({seconds})"
    )
    return [sys.executable, "-c", code]


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def read_report(path: Path) -> dict:
    return wait_for(lambda: path.exists() and path.stat().st_size and json.loads(path.read_text()))


def jobs(config_dir: Path):
    return parse_state((config_dir / "state.toml").read_text()).jobs


def test_two_concurrent_runs_get_disjoint_gpus(config_dir, tmp_path):
    assert moai_done("switch", "-M", "2xH200.280GB").returncode == 0
    assert moai_done("device", "--add").returncode == 0
    reports = [tmp_path / "a.json", tmp_path / "b.json"]
    first = moai("run", "--", *child_script(reports[0], 30))
    second = moai(
        "run", "--", *child_script(reports[1], 30), env={**os.environ, "MOREH_VISIBLE_DEVICE": "1"}
    )
    a, b = read_report(reports[0]), read_report(reports[1])
    gpus_a, gpus_b = set(a["cvd"].split(",")), set(b["cvd"].split(","))
    assert len(gpus_a) == 2 and len(gpus_b) == 2 and not gpus_a & gpus_b
    recorded = {
        j.pid: j
        for j in wait_for(
            lambda: (
                len({j.pid for j in jobs(config_dir)} & {a["pid"], b["pid"]}) == 2
                and jobs(config_dir)
            )
        )
    }
    assert {recorded[a["pid"]].device, recorded[b["pid"]].device} == {0, 1}
    # Least loaded first: the fake's GPU 3 is idle and GPU 1 nearly so; 0 and 2 run at 100 %.
    # Whichever launcher took the lock first got those two.
    assert gpus_a | gpus_b == {"0", "1", "2", "3"} and {"1", "3"} in ({*gpus_a}, {*gpus_b})
    smi = moai_done("smi")
    assert str(a["pid"]) in smi.stdout and "Processes:" in smi.stdout
    refused = moai_done("switch", "-M", "1")
    assert refused.returncode == 1
    assert refused.stderr == "The model cannot be switched while the MoAI Accelerator is in use.\n"
    for process in (first, second):
        process.send_signal(signal.SIGTERM)  # forwarded to the child
        assert process.wait(timeout=20) == 128 + signal.SIGTERM
    assert jobs(config_dir) == ()


def test_child_killed_with_sigkill_cleans_state(config_dir, tmp_path):
    report = tmp_path / "r.json"
    moai_done("switch", "-M", "1xH200.140GB")
    launcher = moai("run", "--", *child_script(report, 60))
    child = read_report(report)["pid"]
    wait_for(lambda: [j for j in jobs(config_dir) if j.pid == child])
    os.kill(child, signal.SIGKILL)
    assert launcher.wait(timeout=20) == 128 + signal.SIGKILL
    assert jobs(config_dir) == ()
    assert moai_done("switch", "-M", "2xH200.280GB").returncode == 0


def test_exit_code_passed_through_and_no_shell(config_dir, tmp_path):
    marker = tmp_path / "should-not-exist"
    result = moai_done(
        "run",
        "--",
        sys.executable,
        "-c",
        "import sys; print(sys.argv[1:]); raise SystemExit(7)",
        f"; touch {marker}",
        "$HOME",
    )
    assert result.returncode == 7
    assert result.stdout.strip() == repr([f"; touch {marker}", "$HOME"])
    assert not marker.exists()
    missing = moai_done("run", "--", "no-such-program-xyz")
    assert missing.returncode == 127 and "cannot start 'no-such-program-xyz'" in missing.stderr


def test_killed_launcher_entry_pruned_by_pid(config_dir, tmp_path):
    report = tmp_path / "r.json"
    launcher = moai("run", "--", *child_script(report, 60))
    child = read_report(report)["pid"]
    wait_for(lambda: [j for j in jobs(config_dir) if j.pid == child])
    launcher.kill()  # the launcher dies; its child still holds the GPUs
    launcher.wait()
    assert "Processes:" in moai_done("smi").stdout
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: "Processes:" not in moai_done("smi").stdout)
    assert moai_done("switch", "-M", "2").returncode == 0  # the stale entry no longer blocks
    assert jobs(config_dir) == ()


def test_smi_reset_stops_a_run(config_dir, tmp_path):
    report = tmp_path / "r.json"
    launcher = moai("run", "--", *child_script(report, 60))
    child = read_report(report)["pid"]
    wait_for(lambda: [j for j in jobs(config_dir) if j.pid == child])
    assert moai_done("smi", "-r").stdout == "Device release success.\n"
    assert launcher.wait(timeout=20) == 128 + signal.SIGTERM
    assert jobs(config_dir) == ()


def test_busy_device_waits_or_refuses(config_dir, tmp_path):
    report = tmp_path / "r.json"
    launcher = moai("run", "--", *child_script(report, 60))
    child = read_report(report)["pid"]
    wait_for(lambda: [j for j in jobs(config_dir) if j.pid == child])
    refused = moai_done("run", "--no-wait", "--", "true")
    assert refused.returncode == 1
    assert f"will resume automatically after the process {child} terminates" in refused.stderr
    launcher.send_signal(signal.SIGINT)
    launcher.wait(timeout=20)


def test_run_on_simulator_explains(config_dir):
    result = run_cli("run", "--backend", "simulator", "--", "true")
    assert result.returncode == 1 and "use 'moai-tui sim start'" in result.stderr
    assert run_cli("run").returncode == 2
