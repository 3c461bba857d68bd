"""`moai-tui run` on a real Slurm cluster (the `slurm` fixture: 4 nodes of 8 GPUs): the flavor
becomes an srun allocation while CMD runs, as the platform promises."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from conftest import moai_exe, run_cli
from slurm_local import wait_for

from moai_tui.state import parse_state
from moai_tui.text.messages import IN_USE, NO_RESOURCES, RELEASE_OK

REPORT = 'echo "$SLURMD_NODENAME $SLURM_JOB_ID $CUDA_VISIBLE_DEVICES $SLURM_STEP_GPUS" >> {path}'


def report_cmd(path: Path, seconds: float = 0, code: int = 0) -> list[str]:
    return ["bash", "-c", f"{REPORT.format(path=path)}; sleep {seconds}; exit {code}"]


def report_until_stopped(path: Path) -> list[str]:
    """A CMD that reports, then only sleeps until a signal ends it. `exec`: the task is one
    process, so the signal that stops the step ends it. As bash waiting on `sleep`, the test
    cluster's proctrack/linuxproc could signal the sleep alone, and bash went on to `exit 0`."""
    return ["bash", "-c", f"{REPORT.format(path=path)}; exec sleep 600"]


def launch(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [moai_exe(), "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def switch(flavor: str, device: str | None = None) -> None:
    env = {"MOREH_VISIBLE_DEVICE": device} if device else None
    done = run_cli("switch", "-M", flavor, env=env)
    assert done.returncode == 0, done.stderr


def smi_processes() -> list[dict]:
    done = run_cli("smi", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["processes"]


def allocation_ends(slurm) -> None:
    """Slurm lists a cancelled job as completing until its nodes report back (longer on a busy
    machine): the allocation must be gone soon, not at once."""
    wait_for(lambda: not slurm.jobs(), what="the allocation to end")


def state_jobs(config_dir: Path):
    path = config_dir / "state.toml"
    return parse_state(path.read_text()).jobs if path.exists() else ()


def test_one_node_flavor_runs_cmd_on_its_gpus_with_slurms_job_id(slurm, config_dir, tmp_path):
    switch("2xH100.159GB")
    out = tmp_path / "seen"
    launcher = launch("--", *report_cmd(out, seconds=30, code=3))
    (seen,) = wait_for(lambda: lines(out), what="CMD to start")
    node, job_id, visible, step_gpus = seen
    assert len(visible.split(",")) == 2 and step_gpus == visible and node.startswith("node")
    (process,) = wait_for(smi_processes, what="smi to show the job")
    assert process["job_id"] == int(job_id) and process["command"].startswith("bash -c")
    assert f"{job_id} RUNNING None" in slurm.jobs()
    per_gpu = run_cli("smi", "-p").stdout
    for index in visible.split(","):  # its real allocation, readings unknown without metrics
        assert f"{node}:{index} " in per_gpu
    assert per_gpu.count(" - ") >= 2
    launcher.send_signal(signal.SIGINT)  # as a Ctrl-C would reach it
    assert launcher.wait(30) == 130
    allocation_ends(slurm)
    assert smi_processes() == []
    assert state_jobs(config_dir) == ()


def test_several_node_flavor_and_cmds_exit_code(slurm, tmp_path):
    switch("16xH100.1274GB")
    out = tmp_path / "seen"
    done = subprocess.run(
        [moai_exe(), "run", "--", *report_cmd(out, code=7)], capture_output=True, text=True
    )
    assert done.returncode == 7
    seen = lines(out)
    assert sorted(s[0] for s in seen) == ["node00", "node01"]  # once on each node
    assert len({s[1] for s in seen}) == 1  # one allocation
    assert all(len(s[2].split(",")) == 8 and s[3] == s[2] for s in seen)
    allocation_ends(slurm)
    assert smi_processes() == []


def test_a_job_that_does_not_fit_waits_with_the_platforms_words(slurm, config_dir, tmp_path):
    switch("32xH100.2548GB")  # every GPU of the cluster
    run_cli("device", "--add", "8xH100.637GB")
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    first = launch("--", *report_until_stopped(first_out))
    wait_for(lambda: lines(first_out), what="the first job")
    second = launch("--", *report_cmd(second_out), env={"MOREH_VISIBLE_DEVICE": "1"})
    waiting = wait_for(
        lambda: [line for line in slurm.jobs() if "PENDING" in line], what="the second to wait"
    )
    assert "Resources" in waiting[0] or "Priority" in waiting[0]
    processes = wait_for(lambda: len(smi_processes()) == 2 and smi_processes())
    assert {p["device"]: p["waiting"] for p in processes} == {0: False, 1: True}
    assert not lines(second_out)
    first.send_signal(signal.SIGTERM)  # the launcher killed: its allocation goes with it
    assert first.wait(30) == 128 + signal.SIGTERM
    assert second.wait(60) == 0
    _, err = second.communicate()
    assert err.splitlines()[0] == NO_RESOURCES
    assert len(lines(second_out)) == 1  # it started by itself
    assert state_jobs(config_dir) == ()  # the launcher cleans up before it exits
    allocation_ends(slurm)


def test_smi_r_cancels_and_switch_is_refused_while_it_runs(slurm, config_dir, tmp_path):
    switch("4xH100.318GB")
    out = tmp_path / "seen"
    launcher = launch("--", *report_until_stopped(out))
    (seen,) = wait_for(lambda: lines(out), what="CMD to start")
    refused = run_cli("switch", "-M", "1xH100.79GB")
    assert refused.returncode == 1 and refused.stderr.strip() == IN_USE
    released = run_cli("smi", "-r")
    assert released.returncode == 0 and released.stdout.strip() == RELEASE_OK
    assert launcher.wait(30) != 0
    assert state_jobs(config_dir) == ()  # the launcher cleans up before it exits
    allocation_ends(slurm)
    assert run_cli("switch", "-M", "1xH100.79GB").returncode == 0


def test_a_launcher_killed_outright_leaves_no_allocation(slurm, config_dir, tmp_path):
    switch("8xH100.637GB")
    out = tmp_path / "seen"
    launcher = launch("--", *report_until_stopped(out))
    (seen,) = wait_for(lambda: lines(out), what="CMD to start")
    assert f"{seen[1]} RUNNING None" in slurm.jobs()
    launcher.kill()  # SIGKILL: no handler runs; srun goes with its parent
    launcher.wait(10)
    allocation_ends(slurm)
    assert smi_processes() == []
    assert run_cli("switch", "-M", "1xH100.79GB").returncode == 0  # the device is free again


def test_a_waiting_job_cancelled_before_it_starts(slurm, config_dir, tmp_path):
    blocker = slurm.client(
        [
            "sbatch",
            "--parsable",
            "-o",
            "/dev/null",
            "-N4",
            "--gpus-per-node=8",
            "--wrap",
            "sleep 600",
        ]
    )
    wait_for(lambda: f"{blocker.stdout.strip()} RUNNING None" in slurm.jobs(), what="blocker")
    switch("1xH100.79GB")
    refused = run_cli("run", "--no-wait", "--", "true")
    assert refused.returncode == 1 and refused.stderr == f"moai-tui: {NO_RESOURCES}\n"
    launcher = launch("--", "true")
    wait_for(lambda: sum("PENDING" in line for line in slurm.jobs()) == 1, what="waiting")
    wait_for(lambda: any(j.job_id > 0 for j in state_jobs(config_dir)), what="Slurm's id")
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(30) == 128 + signal.SIGTERM
    _, err = launcher.communicate()
    assert NO_RESOURCES in err
    wait_for(lambda: len(slurm.jobs()) == 1, what="only the blocker left")
    assert state_jobs(config_dir) == ()


def test_srun_options_from_config_and_flags(slurm, config_dir, tmp_path):
    (config_dir / "config.toml").write_text(
        'backend = "slurm"\n[slurm]\ninterval = 1\npartition = "nosuch"\n'
    )
    switch("1xH100.79GB")
    done = run_cli("run", "--", "true")
    assert done.returncode == 1 and "Invalid partition" in done.stderr
    out = tmp_path / "seen"
    done = run_cli("run", "--partition", "gpu", "--time", "5", "--", *report_cmd(out))
    assert done.returncode == 0, done.stderr
    assert len(lines(out)) == 1
    assert state_jobs(config_dir) == ()
    bad = run_cli("run", "--srun-option", "exclusive", "--", "true")
    assert bad.returncode == 2 and "--srun-option" in bad.stderr


def test_a_flavor_larger_than_the_cluster_is_refused(slurm, config_dir):
    catalog = config_dir / "catalog.toml"
    catalog.write_text(
        "mib_per_gpu = 81559\ngpus_per_node = 8\n"
        'flavors = [{ name = "40xH100", gpus = 40, nodes = 5 }]\n'
    )
    (config_dir / "state.toml").write_text(
        'version = 1\ncurrent = 0\n[[devices]]\nid = 0\nflavor = "40xH100"\n'
    )
    done = run_cli("run", "--", "true")
    assert done.returncode == 1
    assert done.stderr.startswith("moai-tui: flavor 40xH100 needs 40 GPUs, the cluster has 32")
    assert state_jobs(config_dir) == ()  # the launcher cleans up before it exits
    allocation_ends(slurm)


def test_ctrl_c_in_a_terminal_cancels_the_allocation(slurm, config_dir, tmp_path):
    """In a real terminal (tmux) Ctrl-C reaches moai-tui and srun together: one cancel, exit 130."""
    assert shutil.which("tmux"), "tmux is required (installed by .ci/run)"
    switch("16xH100.1274GB")
    out, status = tmp_path / "seen", tmp_path / "status"
    exports = " ".join(
        f"{k}={shlex.quote(os.environ[k])}" for k in ("MOAI_TUI_CONFIG_DIR", "SLURM_CONF")
    )
    command = shlex.join([moai_exe(), "run", "--", *report_until_stopped(out)])
    session = f"moai-slurm-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            f"env {exports} {command}; echo $? > {shlex.quote(str(status))}; sleep 30",
        ],
        check=True,
    )
    try:
        wait_for(lambda: len(lines(out)) == 2, what="CMD on both nodes")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        assert wait_for(lambda: status.exists() and status.read_text().strip()) == "130"
        assert state_jobs(config_dir) == ()  # the launcher cleans up before it exits
        allocation_ends(slurm)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
