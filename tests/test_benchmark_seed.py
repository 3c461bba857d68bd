"""The dashboard benchmarks and the soak measure a job that already runs (benchmarks/).

A 48xLarge job submitted at the start waited 15-21 min for free nodes, then 384 GPUs turned busy
mid-soak: a +2 MB step that looked like a leak."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import moai_exe

from benchmarks.bench_dashboard import SEEDED_JOB_AGE_S, seeded_config
from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.catalog import load_catalog
from moai_tui.model import JobRequest


@pytest.mark.parametrize("hour", range(0, 48, 3))
def test_a_48xlarge_job_submitted_that_long_ago_runs_whenever_measured(hour):
    now = 1_780_000_000.0 + hour * 3600 + 1234
    spec = load_catalog().get("48xLarge.24576GB")
    job = JobRequest(1, 2, 0, "train", spec.gpus, spec.nodes, now - SEEDED_JOB_AGE_S, "me")
    snapshot = SimulatorBackend(clock=lambda: now, user="me").sample([job])
    running = snapshot.job_on_device(0)
    assert running is not None and not running.waiting and len(running.gpus) == spec.gpus


def test_seeded_config_holds_a_running_job(monkeypatch):
    monkeypatch.delenv("MOAI_TUI_SIM_TIME", raising=False)
    directory = seeded_config("48xLarge.24576GB")
    smi = subprocess.run(
        [moai_exe(), "smi", "--json"],
        env={**os.environ, "MOAI_TUI_CONFIG_DIR": directory},
        capture_output=True,
        text=True,
        check=True,
    )
    (process,) = json.loads(smi.stdout)["processes"]
    assert not process["waiting"] and process["memory_used_mib"] > 0
