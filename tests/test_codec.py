"""Snapshot decoding: JSON's NaN and Infinity are numbers to Python's json, never to us."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_cli

from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.codec import DecodeError, snapshot_from_dict, snapshot_to_dict


def snapshot_dict() -> dict:
    from moai_tui.model import JobRequest

    request = JobRequest(1, 10, 0, "python train.py", 1, 1, 1779999000.0, "me")
    backend = SimulatorBackend(nodes=2, clock=lambda: 1780000000.0, user="me")
    return snapshot_to_dict(backend.sample([request]))


@pytest.mark.parametrize(
    "bad",
    ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400],
    ids=["nan", "inf", "-inf", "1e400", "10**400"],
)
def test_time_and_started_must_be_finite(bad):
    for field, where in (("time", "snapshot.time"), ("started", "snapshot.jobs[0].started")):
        data = snapshot_dict()
        target = data if field == "time" else next(j for j in data["jobs"] if j["user"] == "me")
        data["jobs"] = [target] if field == "started" else data["jobs"]
        target[field] = "BAD"
        decoded = json.loads(json.dumps(data).replace('"BAD"', bad))
        with pytest.raises(DecodeError, match="^" + re.escape(f"{where}: expected a finite")):
            snapshot_from_dict(decoded)


def test_infinite_time_in_a_saved_snapshot_is_one_line(config_dir, tmp_path):
    document = json.loads(run_cli("smi", "--json").stdout)
    document["cluster"]["time"] = "BAD"
    saved = tmp_path / "inf.json"
    saved.write_text(json.dumps(document).replace('"BAD"', "Infinity"))
    result = run_cli("smi", "--backend", f"snapshot:{saved}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "cluster.time: expected a finite number of seconds" in result.stderr
