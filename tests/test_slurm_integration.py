"""The slurm backend against a real Slurm cluster on loopback (the `slurm` fixture, conftest):
the installed `moai-tui` driven as a user would, and the dashboard's sampler in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import pytest
from conftest import moai_exe, run_cli
from slurm_local import free_ports, wait_for

from moai_tui.backends import open_backend
from moai_tui.config import Config
from moai_tui.context import Context
from moai_tui.sampling import Sampler


def sbatch(cluster, *args: str) -> int:
    done = cluster.client(["sbatch", "--parsable", "-o", "/dev/null", *args])
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


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


async def test_dashboard_marks_stale_while_slurmctld_is_away_then_recovers(slurm, config_dir):
    from moai_tui.tui.app import MoaiApp

    async def until(predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            await pilot.pause(0.1)
        raise AssertionError(f"the dashboard never showed {what}")

    job = sbatch(slurm, "-J", "train", "--gpus=4", "--wrap", "sleep 300")
    app = MoaiApp(Context(), 1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.sample is not None, 20, "a first sample")
        assert app.sample.snapshot.backend == "slurm"
        try:
            slurm.stop_controller()
            await until(lambda: app.stale_reason() is not None, 30, "a stale marker")
            assert "slurm" in app.stale_reason() or "not answering" in app.stale_reason()
        finally:
            slurm.start_controller()
        await until(lambda: app.stale_reason() is None, 60, "recovery")
        assert any(j.job_id == job for j in app.sample.snapshot.jobs)


def test_readings_come_from_prometheus_joined_on_node_and_gpu_index(slurm, tmp_path):
    """Slurm says who holds which GPU; a real Prometheus scraping one exporter per Slurm node
    (the simulator's node00-node03) gives the readings, matched on (node, GPU index)."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is required (installed by .ci/run)"
    ports = free_ports(len(slurm.node_names) + 1)
    processes = [
        subprocess.Popen(
            [moai_exe(), "exporter", "--backend", "simulator", "--node", node]
            + ["--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
        )
        for node, port in zip(slurm.node_names, ports, strict=False)
    ]
    targets = ", ".join(f'"127.0.0.1:{p}"' for p in ports[:-1])
    (tmp_path / "prom.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"scrape_configs:\n  - job_name: dcgm\n    static_configs: [{{targets: [{targets}]}}]\n"
    )
    url = f"http://127.0.0.1:{ports[-1]}"
    processes.append(
        subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prom.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports[-1]}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    try:

        def scraped() -> bool:
            query = f"{url}/api/v1/query?query=count(DCGM_FI_DEV_GPU_UTIL)"
            try:
                with urllib.request.urlopen(query, timeout=2) as answer:
                    result = json.load(answer)["data"]["result"]
            except OSError:
                return False
            return bool(result) and result[0]["value"][1] == "32"

        wait_for(scraped, timeout=40, what="Prometheus to scrape every node")
        job = sbatch(slurm, "-J", "train", "-N2", "--gpus-per-node=4", "--wrap", "sleep 300")
        wait_for(lambda: f"{job} RUNNING None" in slurm.jobs(), what="the job to run")
        joined = json.loads(run_cli("smi", "--json", "--prometheus-url", url).stdout)["cluster"]
        truth = json.loads(run_cli("smi", "--json", "--backend", "simulator").stdout)["cluster"]
        expected = {
            (n["name"], g["index"]): g
            for n in truth["nodes"]
            if n["name"] in slurm.node_names
            for g in n["gpus"]
        }
        assert joined["backend"] == "slurm"
        for node in joined["nodes"]:
            for gpu in node["gpus"]:
                real = expected[(node["name"], gpu["index"])]
                assert gpu["util"] is not None and gpu["temp_c"] is not None
                assert gpu["util"] == pytest.approx(real["util"], abs=0.01)
                assert gpu["mem_used_mib"] == real["mem_used_mib"]
        (mine,) = [j for j in joined["jobs"] if j["job_id"] == job]
        held = [expected[(p.split(":")[0], int(p.split(":")[1]))] for p in mine["gpus"]]
        assert mine["mem_used_mib"] == sum(g["mem_used_mib"] for g in held)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
