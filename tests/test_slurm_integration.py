"""The slurm backend against a real Slurm cluster on loopback (the `slurm` fixture, conftest):
the installed `moai-tui` driven as a user would, and the dashboard's sampler in-process."""

from __future__ import annotations

import json
import time

from conftest import run_cli

from moai_tui.backends import open_backend
from moai_tui.config import Config
from moai_tui.context import Context
from moai_tui.sampling import Sampler


def sbatch(cluster, *args: str) -> int:
    done = cluster.client(["sbatch", "--parsable", "-o", "/dev/null", *args])
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def smi_json() -> dict:
    done = run_cli("smi", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_smi_shows_every_users_gpus_pending_jobs_and_closed_nodes(slurm):
    theirs = sbatch(
        slurm, "--uid=nobody", "-J", "eval", "-N2", "--gpus-per-node=3", "--wrap", "sleep 300"
    )
    wait_for(lambda: f"{theirs} RUNNING None" in slurm.jobs(), what="the job to run")
    waiting = sbatch(slurm, "-J", "wide", "-N3", "--gpus-per-node=8", "--wrap", "sleep 300")
    slurm.client(["scontrol", "update", "nodename=node03", "state=drain", "reason=bad fan"])
    wait_for(lambda: f"{waiting} PENDING Resources" in slurm.jobs(), what="a reason to wait")
    cluster = smi_json()["cluster"]
    assert cluster["backend"] == "slurm" and cluster["version"]["current"].startswith("22.05")
    jobs = {j["job_id"]: j for j in cluster["jobs"]}
    assert jobs[theirs]["user"] == "nobody" and jobs[theirs]["device"] is None
    assert len(jobs[theirs]["gpus"]) == 6 and not jobs[theirs]["waiting"]
    assert jobs[waiting]["waiting"] and jobs[waiting]["reason"] == "Resources"
    assert jobs[waiting]["gpus_wanted"] == 24 and jobs[waiting]["nodes_wanted"] == 3
    nodes = {n["name"]: n for n in cluster["nodes"]}
    assert nodes["node03"]["state"] == "drained" and nodes["node03"]["reason"] == "bad fan"
    held = [g for n in cluster["nodes"] for g in n["gpus"] if g["job_id"] == theirs]
    assert len(held) == 6
    assert all(g["util"] is None for n in cluster["nodes"] for g in n["gpus"])  # no metrics


def test_auto_picks_slurm_where_squeue_answers(slurm, config_dir, monkeypatch):
    (config_dir / "config.toml").unlink()
    assert smi_json()["cluster"]["backend"] == "slurm"
    # A login node whose slurm.conf names no live controller: the simulator, saying why.
    conf = slurm.dir / "etc" / "nowhere.conf"
    conf.write_text(slurm.conf.read_text().replace(f"Port={slurm.ctld_port}", "Port=1"))
    started = time.monotonic()
    done = run_cli("smi", "--json", env={"SLURM_CONF": str(conf)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cluster"]["backend"] == "simulator"
    assert time.monotonic() - started < 15
    monkeypatch.setenv("SLURM_CONF", str(conf))
    backend = open_backend("auto", Config())
    assert backend.name == "simulator"
    assert "; slurm: " in backend.notice and backend.notice.endswith("simulated MoAI cluster")


def test_controller_down_then_back_gives_an_error_then_recovers(slurm, config_dir):
    job = sbatch(slurm, "-J", "train", "--gpus=2", "--wrap", "sleep 300")
    wait_for(lambda: f"{job} RUNNING None" in slurm.jobs(), what="the job to run")
    ctx = Context()
    sampler = Sampler(ctx, None)  # the dashboard's data path
    first = sampler.take()
    assert first.sample is not None
    assert any(j.job_id == job for j in first.sample.snapshot.jobs)
    try:
        slurm.stop_controller()
        time.sleep(1.1)  # past the poll interval
        stale = sampler.take()
        assert stale.sample is None and "slurm" in stale.error
        done = run_cli("smi")
        assert done.returncode == 1 and done.stderr.startswith("moai-tui: slurm")
        assert len(done.stderr.strip().splitlines()) == 1
    finally:
        slurm.start_controller()
    slurm.wait_for(slurm._answers_quickly, 20, "slurmctld never came back")
    back = wait_for(lambda: sampler.take().sample, timeout=40, what="recovery")
    assert any(j.job_id == job and not j.waiting for j in back.snapshot.jobs)
    ctx.close()
