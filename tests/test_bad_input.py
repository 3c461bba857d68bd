"""Bad input from the environment, the command line and config.toml: one line naming what was
wrong, exit 2, never a traceback, never a silently different meaning."""

from __future__ import annotations

import os
import pty
import select
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from conftest import moai_exe, run_cli

from moai_tui.backends import open_backend
from moai_tui.config import load_config
from moai_tui.context import Context
from moai_tui.sampling import Sampler
from moai_tui.state import parse_state


def one_line(result, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["abc", "nan", "1e400", "inf", "-5"])
@pytest.mark.parametrize(
    "args", [["smi"], ["device", "--list"], ["sim", "start", "x"], ["switch", "-M", "2"], []]
)
def test_bad_sim_time_is_one_line_from_every_command(config_dir, value, args):
    result = run_cli(*args, "--backend", "simulator", env={"MOAI_TUI_SIM_TIME": value})
    one_line(result, 2, f"MOAI_TUI_SIM_TIME={value!r} must be a Unix time")


def test_bad_sim_time_is_an_error_the_dashboard_can_show(config_dir, monkeypatch):
    ctx = Context(backend_spec="simulator")
    monkeypatch.setenv("MOAI_TUI_SIM_TIME", "nan")
    outcome = Sampler(ctx, None).take()
    assert outcome.sample is None and "MOAI_TUI_SIM_TIME='nan'" in outcome.error


@pytest.mark.parametrize("value", ["inf", "nan", "1e9", "0.1", "-1", "10.5"])
def test_bad_interval_is_one_line(config_dir, value):
    one_line(run_cli("--interval", value), 2, "--interval must be")


def write_config(config_dir: Path, text: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(text)


@pytest.mark.parametrize(
    "text, key",
    [
        ('[prometheus]\ntimeout = "3s"\n', "'prometheus.timeout'"),
        ('[prometheus]\ninsecure_skip_verify = "false"\n', "'prometheus.insecure_skip_verify'"),
        ("[prometheus]\ninsecure_skip_verify = 0\n", "'prometheus.insecure_skip_verify'"),
        ("[prometheus]\nurl = 9090\n", "'prometheus.url'"),
        ("[prometheus]\ntimeout = inf\n", "'prometheus.timeout'"),
        ("interval = inf\n", "'interval'"),
        ("interval = 100\n", "'interval'"),
        ("interval = true\n", "'interval'"),
        ('interval = "1"\n', "'interval'"),
        ("backend = 3\n", "'backend'"),
        ("theme = []\n", "'theme'"),
        ("catalog = 1\n", "'catalog'"),
        ("prometheus = 3\n", "'prometheus'"),
        ("[simulator]\nnodes = 0\n", "'simulator.nodes'"),
        ("[simulator]\nseed = 1.5\n", "'simulator.seed'"),
        ("[simulator]\nload = 2\n", "'simulator.load'"),
        ("[simulator]\nversion = 24\n", "'simulator.version'"),
    ],
)
def test_every_config_value_is_type_checked(config_dir, text, key):
    write_config(config_dir, text)
    one_line(run_cli("smi", "--backend", "simulator"), 2, "config.toml", key)


def test_wrong_secret_is_named_not_printed(config_dir):
    write_config(config_dir, "[prometheus]\npassword = 31337424242\n")
    result = run_cli("smi", "--backend", "simulator")
    one_line(result, 2, "'prometheus.password' must be a non-empty string, got a int")
    assert "31337424242" not in result.stderr


def test_prometheus_backend_uses_the_checked_settings(config_dir, monkeypatch):
    for name in ("URL", "TOKEN", "USER", "PASSWORD"):
        monkeypatch.delenv(f"MOAI_TUI_PROMETHEUS_{name}", raising=False)
    write_config(
        config_dir,
        '[prometheus]\nurl = "https://127.0.0.1:9"\ntimeout = 0.5\ninsecure_skip_verify = false\n',
    )
    backend = open_backend("prometheus", load_config(config_dir / "config.toml"))
    assert backend.client.timeout == 0.5 and backend.client.where == "https://127.0.0.1:9"
    assert backend.client.context.verify_mode == ssl.CERT_REQUIRED
    write_config(config_dir, '[prometheus]\nurl = "https://h:9"\ninsecure_skip_verify = true\n')
    off = open_backend("prometheus", load_config(config_dir / "config.toml"))
    assert off.client.context.verify_mode == ssl.CERT_NONE


def test_empty_state_file_says_so(config_dir):
    config_dir.mkdir(parents=True)
    (config_dir / "state.toml").write_text("")
    one_line(run_cli("smi"), 1, "the file is empty")
    with pytest.raises(ValueError, match="the file is empty"):
        parse_state(" \n")


# CLI semantics ------------------------------------------------------------------------------
def state(config_dir: Path):
    return parse_state((config_dir / "state.toml").read_text())


def in_terminal(args: list[str], answer: str, timeout: float = 30.0) -> tuple[int, str]:
    """`moai-tui ARGS` on a pseudo-terminal, typing `answer` once it prompts; (code, screen)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [moai_exe(), *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    screen = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the other side closed: the program ended
                    break
                if not chunk:
                    break
                screen += chunk
            if not answered and screen.rstrip().endswith((b"Device ID:", b"q, Q):")):
                os.write(master, answer.encode() + b"\n")
                answered = True
            if process.poll() is not None and not ready:
                break
        return process.wait(timeout=10), screen.decode(errors="replace")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("args", [["switch"], []], ids=["switch", "dashboard"])
def test_a_bad_theme_file_on_a_terminal_is_one_line(config_dir, args):
    """On a terminal the picker (`switch`) and the dashboard load the themes before the screen
    changes: a malformed user theme is one line naming the file, exit 2, no traceback."""
    themes = config_dir / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text("name = [unclosed\n")
    code, screen = in_terminal(args, "q")
    lines = [line for line in screen.replace("\r", "").splitlines() if line.strip()]
    assert code == 2, screen
    assert len(lines) == 1 and "broken.toml: not valid TOML" in lines[0], screen
    assert "Traceback" not in screen


def test_smi_reset_with_index_stops_that_devices_job(config_dir):
    run_cli("device", "--add", "Small.64GB")
    assert run_cli("sim", "start", "python a.py", "--device", "1").returncode == 0
    result = run_cli("smi", "-r", "-i", "1")  # device 0 is current and idle
    assert result.returncode == 0 and result.stdout == "Device release success.\n"
    assert state(config_dir).jobs == ()


def test_device_rm_without_id_refuses_without_a_terminal(config_dir):
    run_cli("device", "--add", "Small.64GB")
    before = (config_dir / "state.toml").read_bytes()
    one_line(run_cli("device", "--rm", input=""), 2, "device --rm without an ID")
    assert (config_dir / "state.toml").read_bytes() == before


def test_device_rm_without_id_asks_on_a_terminal(config_dir):
    run_cli("device", "--add", "Small.64GB")
    code, screen = in_terminal(["device", "--rm"], "1")
    assert code == 0, screen
    assert "Devices: 0, 1" in screen and "Remove device success." in screen
    assert [d.id for d in state(config_dir).devices] == [0]


def test_device_add_without_flavor_shows_the_menu_on_a_terminal(config_dir):
    code, screen = in_terminal(["device", "--add"], "1")
    assert code == 0, screen
    assert "1. Small.64GB" in screen and "Create device success." in screen
    assert state(config_dir).device(1).flavor == "Small.64GB"


def test_device_add_without_flavor_piped_copies_the_current_flavor(config_dir):
    run_cli("switch", "-M", "Large.256GB")
    assert run_cli("device", "--add", input="").stdout == "Create device success.\n"
    assert state(config_dir).device(1).flavor == "Large.256GB"


def test_busy_device_rm_suggests_a_command_that_works(config_dir):
    run_cli("device", "--add", "Small.64GB")
    run_cli("sim", "start", "python a.py", "--device", "1")
    refused = run_cli("device", "--rm", "1")
    one_line(refused, 1, "stop it with 'moai-tui smi -r -i 1'")
    assert run_cli("smi", "-r", "-i", "1").returncode == 0  # the suggestion, taken literally
    assert run_cli("device", "--rm", "1").stdout == "Remove device success.\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sim", "start", ""], "sim start needs a command"),
        (["sim", "start", "   "], "sim start needs a command"),
        (["sim", "start", "x", "--device", "-1"], "invalid device id '-1'"),
        (["sim", "stop", "--device", "-1"], "invalid device id '-1'"),
        (["device", "--rm", "-1"], "invalid device id '-1'"),
        (["device", "--switch", "-1"], "invalid device id '-1'"),
    ],
)
def test_empty_command_and_negative_device_refused(config_dir, args, needle):
    run_cli("switch", "-M", "2")
    before = (config_dir / "state.toml").read_bytes()
    one_line(run_cli(*args), 2, needle)
    assert (config_dir / "state.toml").read_bytes() == before


def test_unknown_flavor_number_points_to_a_listing(config_dir):
    refused = run_cli("switch", "-M", "99")
    one_line(refused, 2, "no flavor number 99", "'moai-tui switch --list'")
    listing = run_cli("switch", "--list", input="")  # prints, never prompts
    assert listing.returncode == 0 and listing.stdout.startswith("Current MoAI Accelerator: ")
    assert "13. 48xLarge.24576GB\n" in listing.stdout and "Selection" not in listing.stdout


def test_device_add_menu_quit_creates_nothing(config_dir):
    run_cli("switch", "-M", "2")
    before = (config_dir / "state.toml").read_bytes()
    code, screen = in_terminal(["device", "--add"], "q")
    assert code == 0 and "Create device success." not in screen, screen
    assert (config_dir / "state.toml").read_bytes() == before
