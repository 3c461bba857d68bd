"""Record any backend as JSON lines; replay it, and the raw H200 NVML trace, as a backend."""

from __future__ import annotations

import json

from conftest import FIXTURES, run_cli

from moai_tui.backends.replay import ReplayBackend, load_recording
from moai_tui.codec import snapshot_to_dict

TRACE = FIXTURES / "nvml" / "h200-trace.jsonl"


def test_h200_trace_plays_back_at_recorded_pace():
    frames = load_recording(TRACE)
    assert len(frames) == 264
    now = [0.0]
    backend = ReplayBackend(frames, speed=1.0, clock=lambda: now[0])
    first = backend.sample()
    assert first.nodes[0].gpus[0].model == "NVIDIA H200" and first.version_current == "580.159.04"
    now[0] = 30.0  # 30 s in: the alloc30+busy phase
    busy = backend.sample().nodes[0].gpus[0]
    assert busy.util >= 99 and busy.mem_used_mib > 30 * 1024
    assert [j.pid for j in backend.sample().jobs] == [439]
    now[0] = frames[-1].time - frames[0].time + 0.01  # loops
    assert backend.sample() == first


def test_speed_makes_it_faster():
    frames = load_recording(TRACE)
    now = [0.0]
    fast = ReplayBackend(frames, speed=10.0, clock=lambda: now[0])
    now[0] = 3.0
    assert fast.sample().time == max(f.time for f in frames if f.time <= frames[0].time + 30.0)


def test_record_then_replay_round_trip(config_dir, tmp_path):
    out = tmp_path / "rec.jsonl"
    result = run_cli(
        "record",
        "--backend",
        "simulator",
        "--out",
        str(out),
        "--seconds",
        "0.3",
        "--interval",
        "0.1",
    )
    assert result.returncode == 0 and "Recorded" in result.stdout
    lines = out.read_text().splitlines()
    assert 3 <= len(lines) <= 5
    frames = load_recording(out)
    assert snapshot_to_dict(frames[0]) == json.loads(lines[0])
    smi = run_cli("smi", "--backend", f"replay:{out}@100", "--json")
    assert smi.returncode == 0 and json.loads(smi.stdout)["cluster"]["backend"] == "simulator"


def test_smi_on_the_h200_trace(config_dir):
    result = run_cli("smi", "--backend", f"replay:{TRACE}@5", "-v")
    assert result.stdout == "NVIDIA driver 580.159.04\n"


def test_bad_recordings_are_one_line_errors(config_dir, tmp_path):
    cases = {"empty.jsonl": "", "garbage.jsonl": "{not json\n", "wrong.jsonl": '{"nodes": 3}\n'}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = run_cli("smi", "--backend", f"replay:{path}")
        assert result.returncode == 2 and str(path) in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    bad_speed = run_cli("smi", "--backend", f"replay:{TRACE}@fast")
    assert bad_speed.returncode == 2 and "replay speed 'fast'" in bad_speed.stderr
