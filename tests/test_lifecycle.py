"""The dashboard runs only where it can draw, and it always ends (issues 13 and 19): on a pipe it
refuses; a terminal closed without SIGHUP, pipes that close, an output nobody reads or a killed
tmux pane end it within seconds instead of leaving it spinning or deaf to SIGTERM."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import uuid

from conftest import moai_exe, run_cli
from served import session_processes, wait_until

ENDS_WITHIN_S = 10.0  # the lifeline's grace is 3 s: only a dashboard that never ends misses this
WEB_DRIVER = {
    "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver",  # as textual-serve starts it
    "COLUMNS": "120",
    "ROWS": "40",
}
F_SETPIPE_SZ = 1031


def dashboard_argv() -> list[str]:
    return [moai_exe(), "--backend", "simulator", "--interval", "0.25"]


def test_dashboard_on_pipes_refuses_with_one_line(config_dir):
    result = run_cli("--backend", "simulator", timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("moai-tui: the dashboard needs a terminal") and "moai-tui smi" in line


def test_dashboard_names_the_stream_that_is_not_a_terminal(config_dir):
    master, slave = pty.openpty()
    with open(os.devnull, "rb") as nothing:
        process = subprocess.Popen(
            dashboard_argv(), stdin=nothing, stdout=slave, stderr=slave, start_new_session=True
        )
    os.close(slave)
    assert process.wait(30) == 2
    written = os.read(master, 4096).decode()
    os.close(master)
    assert "and stdin is not one" in written and "\x1b[" not in written


def test_bad_option_is_named_before_the_terminal_check(config_dir):
    result = run_cli("--interval", "0.01", timeout=30)
    assert result.returncode == 2 and "--interval" in result.stderr


def start_on_pipes(pipe_size: int | None = None) -> subprocess.Popen:
    """A dashboard as `moai-tui serve` starts it: Textual's web driver, on pipes."""
    process = subprocess.Popen(
        dashboard_argv(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **WEB_DRIVER},
        start_new_session=True,
        bufsize=0,  # read nothing ahead: what is not read stays in the pipe
    )
    if pipe_size is not None:
        fcntl.fcntl(process.stdout.fileno(), F_SETPIPE_SZ, pipe_size)
    assert process.stdout.readline() == b"__GANGLION__\n"
    return process


def read_packet(stream) -> tuple[bytes, bytes]:
    header = read_exactly(stream, 5)
    return header[:1], read_exactly(stream, int.from_bytes(header[1:], "big"))


def read_exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        assert chunk, "the dashboard's output ended"
        data += chunk
    return data


def send_resize(process: subprocess.Popen, width: int, height: int) -> None:
    meta = json.dumps({"type": "resize", "width": width, "height": height}).encode()
    process.stdin.write(b"M" + len(meta).to_bytes(4, "big") + meta)


def test_served_dashboard_ends_when_its_pipes_close(config_dir):
    process = start_on_pipes()
    try:
        while b"Flavor" not in read_packet(process.stdout)[1]:  # the first frame
            pass
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()  # the server went away
        assert process.wait(ENDS_WITHIN_S) is not None
    finally:
        process.kill()
        process.wait()


def test_sigterm_ends_a_dashboard_whose_output_nobody_reads(config_dir):
    """Its event loop blocks in a write to a full pipe: a handler on that loop never ran."""
    process = start_on_pipes(pipe_size=4096)
    try:
        sizes = iter([(100, 30), (120, 40)] * 100)

        def stuck() -> bool:
            send_resize(process, *next(sizes))  # a full repaint each: the pipe fills
            return blocked_writing(process.pid)

        wait_until(stuck, 60, "the dashboard to block writing to a full pipe", step=0.3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(ENDS_WITHIN_S) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()


def blocked_writing(pid: int) -> bool:
    """The main thread (the event loop's) sleeps in the kernel's pipe write."""
    with open(f"/proc/{pid}/wchan") as wchan:
        return "pipe_write" in wchan.read()


def test_terminal_closed_without_sighup_ends_the_dashboard(config_dir):
    """A pseudo-terminal that is not the dashboard's controlling terminal: closing it sends no
    SIGHUP. Textual's input thread then saw EOF as "readable" forever, at 100 % of a core."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        dashboard_argv(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(slave)
    try:
        shown = b""
        while b"Memory" not in shown:
            shown += os.read(master, 65536)
        os.close(master)
        assert process.wait(ENDS_WITHIN_S) == 128 + signal.SIGHUP
    finally:
        process.kill()
        process.wait()


def test_dashboard_in_a_killed_tmux_pane_ends(config_dir):
    name = f"moai-lifecycle-{uuid.uuid4().hex[:8]}"  # also its own tmux server's socket
    env = f"MOAI_TUI_CONFIG_DIR={config_dir} MOAI_TUI_SIM_TIME=1780000600 TERM=xterm-256color"
    script = f"sleep 0.5; env {env} {' '.join(dashboard_argv())}; sleep 60"
    subprocess.run(
        [*tmux_server(name), "new-session", "-d", "-s", name, "-x", "120", "-y", "40", script],
        check=True,
    )
    try:
        pane = int(tmux(name, "list-panes", "-F", "#{pane_pid}"))
        session = os.getsid(pane)
        wait_until(lambda: "Flavor" in tmux(name, "capture-pane", "-p"), 30, "the dashboard")
        dashboard = [pid for pid in session_processes(session) if pid != pane]
        assert dashboard
    finally:
        subprocess.run([*tmux_server(name), "kill-session", "-t", name], capture_output=True)
    wait_until(
        lambda: not set(dashboard) & set(session_processes(session)),
        ENDS_WITHIN_S,
        "the dashboard of a killed pane to end",
    )


def tmux_server(name: str) -> tuple[str, ...]:
    """A tmux server of the test's own: the default one is shared with whatever else runs."""
    return ("tmux", "-L", name, "-f", "/dev/null")


def tmux(name: str, *command: str) -> str:
    return subprocess.run(
        [*tmux_server(name), command[0], "-t", name, *command[1:]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
