"""Record any backend as JSON lines; replay it, and the raw H200 NVML trace, as a backend."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, run_cli

from moai_tui.backends.replay import ReplayBackend, load_recording
from moai_tui.codec import snapshot_to_dict

TRACE = FIXTURES / "nvml" / "h200-trace.jsonl"


def test_h200_trace_plays_back_at_recorded_pace():
    recording = load_recording(TRACE)
    frames = recording.frames
    assert len(frames) == 264
    now = [0.0]
    backend = ReplayBackend(recording, speed=1.0, clock=lambda: now[0])
    first = backend.sample()
    assert first.nodes[0].gpus[0].model == "NVIDIA H200" and first.version_current == "580.159.04"
    now[0] = 30.0  # 30 s in: the alloc30+busy phase
    busy = backend.sample().nodes[0].gpus[0]
    assert busy.util >= 99 and busy.mem_used_mib > 30 * 1024
    now[0] = frames[-1].time - frames[0].time + 0.01  # loops
    assert backend.sample() == first


def test_speed_makes_it_faster():
    recording = load_recording(TRACE)
    frames = recording.frames
    now = [0.0]
    fast = ReplayBackend(recording, speed=10.0, clock=lambda: now[0])
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
    recording = load_recording(out)
    recorded = json.loads(lines[0])
    assert recording.recorded == "simulator" and recording.catalog is None  # MoAI's applies
    # Shown as a replay, never as the live backend it recorded; otherwise as recorded.
    assert snapshot_to_dict(recording.frames[0]) == {**recorded, "backend": "replay"}
    smi = run_cli("smi", "--backend", f"replay:{out}@100", "--json")
    assert smi.returncode == 0 and json.loads(smi.stdout)["cluster"]["backend"] == "replay"


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


def test_raw_trace_brings_flavors_derived_as_nvml_derives_them(monkeypatch):
    """The H200 trace is one H200: its flavors are NVML's for that machine (not MoAI's, where
    all but one 'need 8 GPUs'), derived by the same function."""
    from fake_nvml import FakeNvml

    from moai_tui.backends.nvml import NvmlBackend

    replayed = load_recording(TRACE).catalog
    FakeNvml(gpus=1).install(monkeypatch)  # the same recording, as live NVML answers
    live = NvmlBackend().local_catalog()
    assert replayed.flavors == live.flavors
    assert [f.name for f in replayed.flavors] == ["1xH200.140GB"]


def test_recorded_gpu_shows_on_the_users_device(config_dir):
    """A fresh user replaying the trace sees the H200 on device 0: smi's row, smi -p's GPU."""
    table = run_cli("smi", "--backend", f"replay:{TRACE}").stdout.splitlines()
    row = table[5].split("|")
    assert row[3].strip() == "1xH200.140GB" and row[4].strip().endswith("MiB")
    assert row[5].strip() == "143771 MiB"
    per_gpu = run_cli("smi", "-p", "--backend", f"replay:{TRACE}").stdout.splitlines()
    rows = [line for line in per_gpu if line.startswith("|") and "h200:0" in line]
    assert len(rows) == 1 and "lost" not in rows[0]


def test_raw_trace_shows_the_processes_it_holds():
    """The fixture wrote its process records as repr() strings: each line says how many ran
    (two), and its utilization samples name pids 439 and 440. Both are shown; memory per
    process is not in the recording, so it is unknown, not invented."""
    lines = [json.loads(line) for line in TRACE.read_text().splitlines()]
    assert all(isinstance(p, str) for line in lines for p in line["procs"].get("ok", []))
    frames = load_recording(TRACE).frames
    counts = [len(line["procs"].get("ok", [])) for line in lines]
    assert [len(f.jobs) for f in frames] == counts and max(counts) == 2
    busy = next(
        (frame, line)
        for frame, line in zip(frames, lines, strict=True)
        if line["phase"].endswith("alloc30+busy") and "ok" in line["proc_util"]
    )
    frame, line = busy
    assert [j.pid for j in frame.jobs] == [439, 440]
    assert all(j.mem_used_mib is None for j in frame.jobs)
    (sampled,) = line["proc_util"]["ok"]
    by_pid = {j.pid: j for j in frame.jobs}
    assert by_pid[sampled["pid"]].util == sampled["smUtil"] and by_pid[440].util is None
    assert frame.nodes[0].gpus[0].job_id is not None  # held, so not "free" in the picker


def test_replay_says_where_it_stands(tmp_path):
    now = [100.0]
    recording = load_recording(TRACE)
    backend = ReplayBackend(recording, speed=2.0, clock=lambda: now[0], source=TRACE.name)
    backend.sample()
    start = backend.replay_status()
    assert (start.source, start.recorded, start.position_s, start.lap) == (
        "h200-trace.jsonl",
        "nvml",
        0.0,
        1,
    )
    assert start.length_s == pytest.approx(65.8, abs=0.1) and start.speed == 2.0
    now[0] += 10.0  # 20 s of recording at 2x
    status = backend.replay_status()
    assert status == start  # the status is the last frame shown, until the next sample
    backend.sample()
    assert 19.0 < backend.replay_status().position_s <= 20.0
    now[0] += start.length_s / 2  # past the end: the second lap
    backend.sample()
    assert backend.replay_status().lap == 2
    assert all(f.backend == "replay" and not f.local for f in recording.frames)


def test_replay_of_a_recorded_nvml_machine(monkeypatch, config_dir, tmp_path):
    from fake_nvml import FakeNvml

    from moai_tui.cli import main

    FakeNvml(gpus=2).install(monkeypatch)
    out = tmp_path / "nvml.jsonl"
    argv = ["record", "--backend", "nvml", "--out", str(out), "--seconds", "0.1"]
    assert main([*argv, "--interval", "0.1"]) == 0
    recording = load_recording(out)
    assert recording.recorded == "nvml"
    assert [f.name for f in recording.catalog.flavors] == ["1xH200.140GB", "2xH200.280GB"]
    frame = recording.frames[0]
    # Recorded pids are not this machine's processes; the recorded GPUs are the device's.
    assert not frame.local and frame.attached and frame.backend == "replay"


def test_sim_start_refused_where_no_job_would_appear(config_dir, tmp_path):
    """A replay or a saved snapshot shows what was recorded: a simulated job would be saved
    and never shown. One line, exit 1, nothing saved."""
    saved = tmp_path / "saved.json"
    saved.write_text(run_cli("smi", "--json", "--backend", "simulator").stdout)
    for spec in (f"replay:{TRACE}", f"snapshot:{saved}"):
        result = run_cli("sim", "start", "python train.py", "--backend", spec)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        kind = spec.split(":")[0]
        assert f"the {kind} backend plays back what was recorded" in result.stderr
    assert json.loads(run_cli("smi", "--json").stdout)["processes"] == []  # nothing saved
