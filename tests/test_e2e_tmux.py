"""End to end in a real terminal: the installed `moai-tui` in tmux, keys sent, screen read."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest
from conftest import moai_exe, run_cli

from moai_tui.state import parse_state

assert shutil.which("tmux"), "tmux is required (installed by .ci/run)"

# A tmux server of these tests' own, kept alive by one idle session: the default server is
# shared with whatever else runs tmux, and one that exits when its last session closes races a
# test's next new-session.
TMUX = ("tmux", "-L", f"moai-tests-{os.getpid()}", "-f", "/dev/null")


@pytest.fixture(scope="module", autouse=True)
def tmux_server():
    subprocess.run([*TMUX, "new-session", "-d", "-s", "keep", "sleep 86400"], check=True)
    yield
    subprocess.run([*TMUX, "kill-server"], capture_output=True)


class Terminal:
    def __init__(self, command: str, env: dict, size=(120, 40)):
        self.name = f"moai-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        # The pause lets the resize below land before the program starts: a tmux server
        # started from pytest opens windows at 80x24 whatever -x/-y say.
        script = f"sleep 0.5; env {exports} {command}; echo EXIT=$?; sleep 60"
        subprocess.run(
            [
                *TMUX,
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(size[0]),
                "-y",
                str(size[1]),
                script,
            ],
            check=True,
        )
        self.resize(*size)  # a running tmux server may keep another default size

    def resize(self, width: int, height: int) -> None:
        subprocess.run(
            [*TMUX, "resize-window", "-t", self.name, "-x", str(width), "-y", str(height)],
            check=True,
        )

    def screen(self, escapes: bool = False) -> str:
        """The pane's text; with `escapes`, with the colour codes tmux would send."""
        return subprocess.run(
            [*TMUX, "capture-pane", "-p", *(["-e"] if escapes else []), "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*TMUX, "send-keys", "-t", self.name, *keys], check=True)

    def flag(self, name: str) -> str:
        return subprocess.run(
            [*TMUX, "display-message", "-p", "-t", self.name, f"#{{{name}}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def wait_gone(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text not in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never went away; screen:\n{self.screen()}")

    def app_pid(self) -> int:
        out = subprocess.run(
            ["pgrep", "-f", f"{moai_exe()} --backend simulator"], capture_output=True, text=True
        ).stdout.split()
        pane_pids = subprocess.run(
            [*TMUX, "list-panes", "-t", self.name, "-F", "#{pane_pid}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        shells = {int(p) for p in pane_pids}
        for pid in map(int, out):  # the pane's shell matches too: skip it, take its child
            if pid not in shells and _descends_from(pid, shells):
                return pid
        raise AssertionError("moai-tui process not found")

    def close(self) -> None:
        subprocess.run([*TMUX, "kill-session", "-t", self.name], capture_output=True)


def _descends_from(pid: int, ancestors: set[int]) -> bool:
    while pid > 1:
        if pid in ancestors:
            return True
        with open(f"/proc/{pid}/stat") as stat:
            pid = int(stat.read().rsplit(")", 1)[1].split()[1])
    return False


@pytest.fixture
def terminal(config_dir):
    base_env = {
        "MOAI_TUI_CONFIG_DIR": str(config_dir),
        "MOAI_TUI_SIM_TIME": "1780000600",
        "TERM": "xterm-256color",
    }
    opened = []

    def open_terminal(size=(120, 40), env: dict | None = None):
        term = Terminal(f"{moai_exe()} --backend simulator", {**base_env, **(env or {})}, size)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


def assert_restored(term: Terminal, code: int) -> None:
    term.wait_for(f"EXIT={code}")
    assert term.flag("alternate_on") == "0"  # back on the normal screen
    assert term.flag("cursor_flag") == "1"  # cursor visible
    assert term.flag("mouse_any_flag") == "0"  # mouse reporting off


def test_dashboard_in_a_real_terminal(terminal, config_dir):
    run_cli("switch", "-M", "xLarge.512GB", env={"MOAI_TUI_SIM_TIME": "1780000000"})
    run_cli("sim", "start", "python train.py", env={"MOAI_TUI_SIM_TIME": "1780000000"})
    term = terminal()
    term.wait_for("● live")
    screen = term.wait_for("python train.py")  # the jobs table: painted with the first sample
    assert "cluster 512 GPUs on 64 nodes" in screen and "you 8 GPUs" in screen
    assert "xLarge.512GB" in screen
    term.keys("p")
    term.wait_for("● paused")
    term.keys("p")
    term.wait_for("● live")
    term.keys("q")
    assert_restored(term, 0)


@pytest.mark.parametrize(
    "env",
    [{"NO_COLOR": "1"}, {"TERM": "screen"}, {"TERM": "xterm-256color"}],
    ids=["NO_COLOR", "screen", "xterm-256color"],
)
@pytest.mark.parametrize("leave", ["q", "C-c"])
def test_every_terminal_kind_starts_shows_the_cluster_and_quits(terminal, config_dir, env, leave):
    run_cli("sim", "start", "python train.py", env={"MOAI_TUI_SIM_TIME": "1780000000"})
    term = terminal(env=env)
    term.wait_for("● live")
    screen = term.wait_for("python train.py")
    assert "cluster 512 GPUs" in screen and "running" in screen
    term.keys("f")
    term.wait_for("choose a flavor")
    term.keys("Escape")
    term.wait_gone("choose a flavor")  # a key right after ESC would read as alt+key
    term.keys(leave)
    assert_restored(term, 0)


def test_sixteen_colours_keep_the_rules(terminal, config_dir):
    # With TERM=screen the dividers were black on black: invisible.
    term = terminal(env={"TERM": "screen"})
    term.wait_for("Cluster ·")
    rule = next(line for line in term.screen(escapes=True).splitlines() if "Cluster" in line)
    colours = {int(c) for c in re.findall(r"\x1b\[(?:[0-9;]*;)?(3[0-7]|9[0-7])m", rule)}
    assert colours and colours != {30}, rule  # some colour other than black
    term.keys("q")
    assert_restored(term, 0)


def test_flavor_picker_end_to_end(terminal, config_dir):
    term = terminal()
    term.wait_for("● live")
    term.keys("f")
    term.wait_for("choose a flavor")
    term.keys("8")
    time.sleep(1.0)  # past the two-digit window
    term.keys("Enter")
    term.wait_for("successfully switched")  # the toast (it wraps: match a fragment)
    term.wait_for("4xLarge.2048GB 32 GPUs")
    other = run_cli("smi")  # another process sees the switch
    star = [line for line in other.stdout.splitlines() if "*" in line]
    assert len(star) == 1 and "4xLarge.2048GB" in star[0]
    term.keys("q")
    assert_restored(term, 0)


def saved_theme(config_dir) -> str | None:
    return parse_state((config_dir / "state.toml").read_text()).theme


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_restore_the_terminal(terminal, config_dir, number):
    """The dashboard has just written the state (a theme change) when the signal lands: the
    terminal is restored, the change is kept whole, and the lock is free for the next one."""
    run_cli("switch", "-M", "2")
    term = terminal()
    term.wait_for("● live")
    term.keys("t")  # next theme: the dashboard writes state.toml
    deadline = time.monotonic() + 15
    while saved_theme(config_dir) is None:
        assert time.monotonic() < deadline, "the theme change never reached state.toml"
        time.sleep(0.05)
    changed = (config_dir / "state.toml").read_bytes()
    os.kill(term.app_pid(), number)
    assert_restored(term, 128 + number)
    assert (config_dir / "state.toml").read_bytes() == changed
    assert parse_state(changed.decode()).device(0).flavor == "Medium.128GB"
    assert not list(config_dir.glob(".state.*.tmp"))
    assert run_cli("switch", "-M", "3").returncode == 0  # no lock left behind


def test_follows_resizes_despite_exported_columns_and_lines(terminal, config_dir):
    # Exported by JupyterLab terminals, and by the shell of a tmux pane started from pytest:
    # stale the moment the terminal is resized.
    term = terminal(env={"COLUMNS": "120", "LINES": "40"})
    term.wait_for("● live")
    term.resize(50, 12)
    term.wait_for("Enlarge the terminal")
    term.resize(100, 30)
    screen = term.wait_for("● live")
    assert "Enlarge" not in screen
    term.keys("q")
    assert_restored(term, 0)


def test_resize_storm_then_quit_restores_the_terminal(terminal, config_dir):
    run_cli("switch", "-M", "2")
    before = (config_dir / "state.toml").read_bytes()
    term = terminal(size=(80, 24))
    term.wait_for("● live")
    for width, height in [(120, 40), (20, 5), (80, 24), (200, 60), (61, 15), (40, 10)] * 3:
        term.resize(width, height)
        time.sleep(0.05)
    term.resize(100, 30)
    screen = term.wait_for("Medium.128GB")  # the full layout again: devices, map, jobs
    deadline = time.monotonic() + 15
    parts = ("● live", "Cluster ·", "Job ID", "Device 0", "? help")  # side panel: >= 100 wide
    while "Enlarge" in screen or not all(part in screen for part in parts):
        assert time.monotonic() < deadline, f"the layout never came back:\n{screen}"
        time.sleep(0.1)
        screen = term.screen()
    term.keys("q")
    assert_restored(term, 0)
    assert (config_dir / "state.toml").read_bytes() == before
