"""`moai-tui run`: real launcher and child processes on a fake 4-GPU NVML."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import FIXTURES, run_cli

from moai_tui import state as state_module
from moai_tui.state import parse_state, process_alive

HERE = Path(__file__).parent
GPUS = "4"
# The fake NVML names GPU i after the recording's UUID, its last two digits replaced by i.
RECORDED_UUID = json.loads((FIXTURES / "nvml" / "h200-static.json").read_text())["devices"][0][
    "uuid"
]["ok"]


def gpu_uuid(index: int) -> str:
    return RECORDED_UUID[:-2] + f"{index:02d}"


def indices(cvd: str) -> set[str]:
    """The GPU indices a CUDA_VISIBLE_DEVICES of UUIDs names; fails on anything else."""
    by_uuid = {gpu_uuid(i): str(i) for i in range(int(GPUS))}
    entries = cvd.split(",")
    assert all(e in by_uuid for e in entries), cvd
    return {by_uuid[e] for e in entries}


def as_from_a_terminal() -> None:
    """In the child: SIGINT and SIGHUP as a shell in a terminal leaves them. Ignored signals stay
    ignored across exec, and pytest run in the background (`cmd &` in a script, nohup) ignores
    both: the launcher would then rightly ignore them too, and the signal tests would wait 20 s."""
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def moai(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """`moai-tui ARGS` with the fake NVML, as a real process started from a terminal."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "fake_nvml_main.py"), GPUS, "--", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=as_from_a_terminal,
        **kwargs,
    )


def moai_done(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    process = moai(*args, env=env)
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
    second = moai("run", "--", *child_script(reports[1], 30), env={"MOREH_VISIBLE_DEVICE": "1"})
    a, b = read_report(reports[0]), read_report(reports[1])
    gpus_a, gpus_b = indices(a["cvd"]), indices(b["cvd"])  # UUIDs, not indices
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
    assert recorded[a["pid"]].command == shlex.join(child_script(reports[0], 30))
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
    """Arguments reach the program as they were given: no shell ever sees them (no command
    separator runs, no substitution, no variable or glob expanded)."""
    markers = [tmp_path / f"should-not-exist-{n}" for n in range(3)]
    arguments = [
        f"; touch {markers[0]}",
        f"$(touch {markers[1]})",
        f"`touch {markers[2]}`",
        "$HOME",
        str(tmp_path / "*"),
    ]
    result = moai_done(
        "run",
        "--",
        sys.executable,
        "-c",
        "import sys; print(sys.argv[1:]); raise SystemExit(7)",
        *arguments,
    )
    assert result.returncode == 7
    assert result.stdout.strip() == repr(arguments)
    assert not any(marker.exists() for marker in markers)
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


def test_busy_device_refuses_with_no_wait(config_dir, tmp_path):
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


def test_second_run_waits_with_the_platforms_message_then_starts(config_dir, tmp_path):
    first_report, second_report = tmp_path / "a.json", tmp_path / "b.json"
    first = moai("run", "--", *child_script(first_report, 60))
    child = read_report(first_report)["pid"]
    wait_for(lambda: [j for j in jobs(config_dir) if j.pid == child])
    second = moai("run", "--", *child_script(second_report, 0))
    message = second.stderr.readline()  # printed once, while it waits
    assert message == (
        "Two or more processes cannot use MoAI Accelerator at the same time. The program will "
        f"resume automatically after the process {child} terminates...\n"
    )
    assert second.poll() is None and not second_report.exists()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=20) == 128 + signal.SIGTERM
    assert read_report(second_report)["pid"] != child  # it started once the first ended
    assert second.wait(timeout=20) == 0
    assert second.stderr.read() == ""  # said once, not once a retry
    assert jobs(config_dir) == ()


def test_colliding_job_ids_never_share_a_record(config_dir, tmp_path):
    """Both launchers draw the same ids (seeded): the second must still get its own, picked
    under the lock; one's exit then leaves the other's record alone."""
    assert moai_done("switch", "-M", "1xH200.140GB").returncode == 0
    assert moai_done("device", "--add").returncode == 0
    assert moai_done("sim", "start", "holder", "--device", "0").returncode == 0
    seeded = {"FAKE_SEEDED_RANDOM": "1"}
    reports = [tmp_path / "a.json", tmp_path / "b.json"]
    waiting = moai(
        "run", "--", *child_script(reports[0], 60), env={**seeded, "MOREH_VISIBLE_DEVICE": "0"}
    )
    assert "resume automatically" in waiting.stderr.readline()  # its id drawn, if drawn early
    running = moai(
        "run", "--", *child_script(reports[1], 60), env={**seeded, "MOREH_VISIBLE_DEVICE": "1"}
    )
    b = read_report(reports[1])
    assert moai_done("sim", "stop", "--device", "0").returncode == 0
    a = read_report(reports[0])
    assert a["job"] != b["job"]
    recorded = wait_for(
        lambda: (
            {j.pid: j for j in jobs(config_dir)}.keys() >= {a["pid"], b["pid"]}
            and {j.pid: j.job_id for j in jobs(config_dir)}
        )
    )
    assert recorded[a["pid"]] != recorded[b["pid"]]
    running.send_signal(signal.SIGTERM)
    assert running.wait(timeout=20) == 128 + signal.SIGTERM
    left = jobs(config_dir)
    assert [(j.pid, j.job_id) for j in left] == [(a["pid"], int(a["job"]))]
    waiting.send_signal(signal.SIGTERM)
    assert waiting.wait(timeout=20) == 128 + signal.SIGTERM
    assert jobs(config_dir) == ()


def test_child_started_late_keeps_its_gpus(config_dir, tmp_path):
    """A child that starts over 2 s after the reservation (a slow fork) is recorded with its
    own start time: nothing judges it dead and gives its GPUs away."""
    report = tmp_path / "r.json"
    launcher = moai("run", "--", *child_script(report, 60), env={"FAKE_SPAWN_DELAY": "3"})
    child = read_report(report)["pid"]
    recorded = wait_for(lambda: [j for j in jobs(config_dir) if j.pid == child])
    assert recorded[0].submitted == pytest.approx(psutil.Process(child).create_time(), abs=0.01)
    assert "Processes:" in moai_done("smi").stdout  # not pruned
    refused = moai_done("switch", "-M", "2")
    assert refused.returncode == 1 and "in use" in refused.stderr
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=20) == 128 + signal.SIGTERM


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_right_after_the_spawn_reaches_the_child(config_dir, tmp_path, number):
    """A signal between the child's start and the launcher's supervision is held, not lost:
    the child gets it, the record goes, nothing is orphaned."""
    report, spawned = tmp_path / "r.json", tmp_path / "spawned"
    launcher = moai("run", "--", *child_script(report, 60), env={"FAKE_AFTER_SPAWN": str(spawned)})
    child = int(wait_for(lambda: spawned.exists() and spawned.read_text()))
    launcher.send_signal(number)  # the launcher is paused just after Popen
    assert launcher.wait(timeout=20) == 128 + number
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert jobs(config_dir) == ()


def test_ctrl_c_in_a_terminal_reaches_the_child_once(config_dir, tmp_path):
    """The terminal sends SIGINT to the child itself: the launcher must not send a second."""
    assert shutil.which("tmux"), "tmux is required (installed by .ci/run)"
    ready, count = tmp_path / "ready", tmp_path / "count"
    code = (
        "import signal, time, pathlib\n"
        "got = []\n"
        "signal.signal(signal.SIGINT, lambda *_: got.append(time.monotonic()))\n"
        f"pathlib.Path({str(ready)!r}).write_text('1')\n"
        "while not got or time.monotonic() - got[0] < 1.5:\n"
        "    time.sleep(0.05)\n"
        f"pathlib.Path({str(count)!r}).write_text(str(len(got)))\n"
    )
    command = shlex.join(
        [sys.executable, str(HERE / "fake_nvml_main.py"), GPUS, "--", "run", "--"]
        + [sys.executable, "-c", code]
    )
    # A tmux server keeps its own environment: hand over what selects the code under test.
    names = ("MOAI_TUI_CONFIG_DIR", "MOAI_TUI_SIM_TIME", "PYTHONPATH")
    exports = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in names if k in os.environ)
    session = f"moai-run-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, f"env {exports} {command}; sleep 30"],
        check=True,
    )
    try:
        wait_for(ready.exists)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        assert wait_for(lambda: count.exists() and count.read_text()) == "1"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_own_cuda_visible_devices_narrows_the_choice(config_dir, tmp_path):
    """A user's CUDA_VISIBLE_DEVICES (indices or UUIDs) is honoured: moai-tui picks among
    those GPUs only, and refuses when they are too few."""
    assert moai_done("switch", "-M", "2xH200.280GB").returncode == 0
    report = tmp_path / "r.json"
    launcher = moai(
        "run",
        "--",
        *child_script(report, 0),
        env={"CUDA_VISIBLE_DEVICES": f"0,{gpu_uuid(2)}"},  # GPUs 0 and 2 run at 100 %
    )
    assert launcher.wait(timeout=30) == 0, launcher.stderr.read()
    assert indices(read_report(report)["cvd"]) == {"0", "2"}
    refused = moai_done("run", "--", "true", env={"CUDA_VISIBLE_DEVICES": "3"})
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "CUDA_VISIBLE_DEVICES='3' allows 1" in refused.stderr


def test_pid_reused_by_another_users_process_is_not_our_job(monkeypatch):
    """Signalling another user's process fails with EPERM: that must not make a reused pid
    look like our job (it would hold the GPUs forever)."""
    since = time.time() - 100  # our job started then; this pid's process started now
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:

        def denied(pid, sig):
            raise PermissionError(1, "Operation not permitted")

        with monkeypatch.context() as patched:
            patched.setattr(state_module.os, "kill", denied)
            assert not process_alive(stranger.pid, since)
            assert process_alive(stranger.pid, psutil.Process(stranger.pid).create_time())
    finally:
        stranger.kill()
        stranger.wait()
