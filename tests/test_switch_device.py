"""`switch` and `device`: the numbered protocol, exact messages, and bad input losing nothing."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import moai_exe, run_cli

from moai_tui.state import parse_state

MENU_XLARGE = """Current MoAI Accelerator: xLarge.512GB

1. Small.64GB
2. Medium.128GB
3. Large.256GB
4. xLarge.512GB  *
5. 1.5xLarge.768GB
6. 2xLarge.1024GB
7. 3xLarge.1536GB
8. 4xLarge.2048GB
9. 6xLarge.3072GB
10. 8xLarge.4096GB
11. 12xLarge.6144GB
12. 24xLarge.12288GB
13. 48xLarge.24576GB

Selection (1-13, q, Q): """


def state_bytes(config_dir: Path) -> bytes:
    return (config_dir / "state.toml").read_bytes()


def current_flavor(config_dir: Path) -> str:
    state = parse_state((config_dir / "state.toml").read_text())
    return state.device(state.current).flavor


def test_piped_protocol_like_moreh_switch_model(config_dir):
    result = run_cli("switch", input="8\nq\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(MENU_XLARGE + "\n\n")
    assert (
        '\nThe MoAI Accelerator model is successfully switched to  "4xLarge.2048GB".\n'
        in result.stdout
    )
    second_menu = result.stdout.split('"4xLarge.2048GB".\n\n', 1)[1]
    assert second_menu.startswith("Current MoAI Accelerator: 4xLarge.2048GB\n")
    assert "8. 4xLarge.2048GB  *\n" in second_menu and "4. xLarge.512GB\n" in second_menu
    assert current_flavor(config_dir) == "4xLarge.2048GB"


def test_piped_protocol_several_selections_and_eof(config_dir):
    result = run_cli("switch", input="1\n13\n")
    assert result.returncode == 0
    assert result.stdout.count("successfully switched") == 2
    assert current_flavor(config_dir) == "48xLarge.24576GB"


def test_non_interactive_model_flag_by_number_and_name(config_dir):
    by_number = run_cli("switch", "-M", "8")
    assert (
        by_number.stdout
        == 'The MoAI Accelerator model is successfully switched to  "4xLarge.2048GB".\n'
    )
    by_name = run_cli("switch", "--model", "small.64gb")
    assert by_name.returncode == 0 and current_flavor(config_dir) == "Small.64GB"


def test_switch_refused_while_job_runs(config_dir):
    run_cli("sim", "start", "python train.py")
    before = state_bytes(config_dir)
    for attempt in (run_cli("switch", "-M", "1"), run_cli("switch", input="1\nq\n")):
        assert attempt.returncode == 1
        assert (
            attempt.stderr == "The model cannot be switched while the MoAI Accelerator is in use.\n"
        )
    assert state_bytes(config_dir) == before


@pytest.mark.parametrize(
    "args, stdin, env, code, needle",
    [
        (["switch", "-M", "Huge.1TB"], None, {}, 2, "unknown flavor 'Huge.1TB'"),
        (["switch", "-M", "14"], None, {}, 2, "no flavor number 14: choose 1-13"),
        (["switch"], "99\n", {}, 2, "invalid selection '99'"),
        (["switch", "-M", "2"], None, {"MOREH_VISIBLE_DEVICE": "3"}, 2, "MOREH_VISIBLE_DEVICE='3'"),
        (["smi"], None, {"MOREH_VISIBLE_DEVICE": "x"}, 2, "MOREH_VISIBLE_DEVICE='x'"),
        (["device", "--rm", "4"], None, {}, 2, "device 4 does not exist"),
        (["device", "--switch", "7"], None, {}, 2, "device 7 does not exist"),
        (["device", "--add", "nope"], None, {}, 2, "unknown flavor 'nope'"),
        (["device", "--rm", "0"], None, {}, 1, "it is your only device"),
        (["smi", "-i", "3"], None, {}, 2, "no device 3"),
        (["smi", "--backend", "warp"], None, {}, 2, "unknown backend 'warp'"),
        (["smi", "--bogus"], None, {}, 2, "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_one_line_exit_code_state_untouched(config_dir, args, stdin, env, code, needle):
    assert run_cli("switch", "-M", "3").returncode == 0  # create the file
    before = state_bytes(config_dir)
    result = run_cli(*args, input=stdin, env=env)
    assert result.returncode == code
    assert needle in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert state_bytes(config_dir) == before


def test_sixth_device_refused(config_dir):
    for _ in range(4):
        assert run_cli("device", "--add").stdout == "Create device success.\n"
    before = state_bytes(config_dir)
    sixth = run_cli("device", "--add", "Small.64GB")
    assert sixth.returncode == 1 and "at most 5" in sixth.stderr
    assert state_bytes(config_dir) == before


def test_device_add_remove_switch_messages(config_dir):
    assert run_cli("device", "--add", "Large.256GB").stdout == "Create device success.\n"
    assert run_cli("device", "--switch", "1").stdout == "Switch Current Device success.\n"
    listing = run_cli("device", "--list").stdout
    assert "|  * 1     |" in listing and "Large.256GB" in listing and "Processes" not in listing
    assert run_cli("device", "--rm", "1").stdout == "Remove device success.\n"
    state = parse_state((config_dir / "state.toml").read_text())
    assert state.current == 0 and [d.id for d in state.devices] == [0]


def test_device_with_job_cannot_be_removed(config_dir):
    run_cli("device", "--add", "Small.64GB")
    run_cli("sim", "start", "python a.py", "--device", "1")
    result = run_cli("device", "--rm", "1")
    assert result.returncode == 1 and "a job runs on it" in result.stderr


def test_corrupt_state_file_is_reported_and_left_alone(config_dir):
    config_dir.mkdir(parents=True)
    path = config_dir / "state.toml"
    path.write_bytes(b"version = 1\ncurrent = [\x00broken")
    before = path.read_bytes()
    for args in (["smi"], ["switch", "-M", "2"], ["device", "--add"], ["sim", "start", "x"]):
        result = run_cli(*args)
        assert result.returncode == 1
        assert str(path) in result.stderr and "invalid" in result.stderr
        assert "Traceback" not in result.stderr
    assert path.read_bytes() == before
    assert [p.name for p in config_dir.iterdir() if not p.name.startswith(".")] == ["state.toml"]


def test_state_written_0600_and_atomically(config_dir):
    run_cli("switch", "-M", "2")
    path = config_dir / "state.toml"
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(config_dir.glob(".state.*.tmp"))


def test_read_only_config_dir_refuses_cleanly(config_dir, tmp_path):
    run_cli("switch", "-M", "2")
    before = state_bytes(config_dir)
    subprocess.run(["mount", "--bind", str(config_dir), str(config_dir)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(config_dir)], check=True)
        result = run_cli("switch", "-M", "9")
        assert result.returncode == 1
        assert "cannot save state" in result.stderr and "Read-only file system" in result.stderr
        assert run_cli("smi").returncode == 0  # reading still works
    finally:
        subprocess.run(["umount", str(config_dir)], check=True)
    assert state_bytes(config_dir) == before


def test_concurrent_switchers_never_tear_the_file(config_dir):
    """Two processes switching hundreds of times while a third reads: always a valid file."""
    run_cli("device", "--add", "Small.64GB")
    script = (
        "import sys\n"
        "from moai_tui.cli import main\n"
        "names = sys.argv[1:]\n"
        "for i in range(150):\n"
        "    assert main(['switch', '-M', names[i % len(names)]]) == 0\n"
    )
    writers = [
        subprocess.Popen(
            ["python3", "-c", script, *flavors], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for flavors in (["1", "5", "13"], ["2", "8"])
    ]
    adders = subprocess.Popen(
        [
            "python3",
            "-c",
            "from moai_tui.cli import main\n"
            "for i in range(60):\n"
            "    assert main(['device', '--add', '3']) == 0\n"
            "    assert main(['device', '--rm', '2']) == 0\n",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    path = config_dir / "state.toml"
    seen = set()
    deadline = time.monotonic() + 120  # a writer stuck on a full stderr pipe fails, not hangs
    while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
        state = parse_state(path.read_text())  # raises if ever torn
        seen.add(state.device(state.current).flavor)
    # A lock timeout or a refusal in any writer is a failure, not noise to throw away.
    _, adder_errors = adders.communicate(timeout=120)
    assert adders.returncode == 0 and adder_errors == "", adder_errors
    outcomes = [w.communicate(timeout=10) for w in writers]
    assert [(w.returncode, err) for w, (_, err) in zip(writers, outcomes, strict=True)] == [
        (0, b""),
        (0, b""),
    ]
    final = parse_state(path.read_text())
    assert final.device(0).flavor in {
        "Small.64GB",
        "1.5xLarge.768GB",
        "48xLarge.24576GB",
        "Medium.128GB",
        "4xLarge.2048GB",
    }
    assert len(seen) >= 2


def test_python_dash_m_entry_point(config_dir):
    result = subprocess.run(["python3", "-m", "moai_tui", "smi"], capture_output=True, text=True)
    assert result.returncode == 0 and "MoAI Accelerator" in result.stdout
    assert moai_exe()


def test_unicode_digits_are_bad_input_not_a_crash(config_dir):
    for args, env in ((["switch", "-M", "¹"], {}), (["smi"], {"MOREH_VISIBLE_DEVICE": "٣"})):
        result = run_cli(*args, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    piped = run_cli("switch", input="²\n")
    assert piped.returncode == 2 and "invalid selection" in piped.stderr
