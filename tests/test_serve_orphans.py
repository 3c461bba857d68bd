"""`moai-tui serve` owns the dashboards it starts (issue 19): a dashboard ends with its browser,
however the browser goes, and every dashboard ends with the server, however the server stops.
Processes are found by session id (the server runs in a session of its own), not by name: an
orphan reparented to init is still found."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from served import CHROMIUM, Served, session_processes, wait_until, ws_handshake

from moai_tui.serve import HEARTBEAT_S

ENDS_WITHIN_S = 10.0  # quit, then SIGTERM 3 s later, then SIGKILL 2 s after that


@pytest.fixture
def server(config_dir):
    served = Served()
    yield served
    served.close()


def chromium(*args: str, url: str, profile: Path) -> subprocess.Popen:
    """Debian's chromium on its own, in a session of its own (so it can be killed whole)."""
    return subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", f"--user-data-dir={profile}", *args, url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def one_dashboard(server: Served) -> int:
    (pid,) = wait_until(server.dashboards, 60, "a dashboard for the browser")
    return pid


def ended(server: Served, what: str) -> None:
    wait_until(lambda: not server.dashboards(), ENDS_WITHIN_S, what)


def test_closed_tab_ends_its_dashboard(server, browser):
    page = browser.new_page()
    page.goto(server.url)
    one_dashboard(server)
    page.close()
    ended(server, "the dashboard of a closed tab")


def test_killed_browser_ends_its_dashboard(server, tmp_path):
    # With a debugging port it stays open on the page until killed.
    browser = chromium("--remote-debugging-port=0", url=server.url, profile=tmp_path)
    try:
        one_dashboard(server)
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait(30)
        ended(server, "the dashboard of a killed browser")
    finally:
        kill_session(browser.pid)


def test_browser_that_loads_and_leaves_ends_its_dashboard(server, tmp_path):
    """The reproduction of issue 19: --dump-dom loads the page, prints it, exits."""
    browser = chromium(
        "--virtual-time-budget=10000", "--dump-dom", url=server.url, profile=tmp_path
    )
    try:
        seen = wait_until(
            lambda: server.dashboards() or browser.poll() is not None, 120, "the browser"
        )
        assert seen is not True, "the browser left before its dashboard started"
        browser.wait(120)
        ended(server, "the dashboard of a browser that left")
    finally:
        kill_session(browser.pid)


@pytest.mark.parametrize("reset", [False, True])
def test_socket_that_goes_after_the_handshake_ends_its_dashboard(server, reset):
    status, connection = ws_handshake(server)
    assert status == 101
    one_dashboard(server)
    if reset:  # no FIN, an RST: what a host that vanishes leaves at best
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
    ended(server, "the dashboard of a dropped socket")


def test_socket_that_never_answers_is_dropped_by_the_heartbeat(server):
    """A browser behind a network that went away: no FIN, no RST, no pong."""
    status, connection = ws_handshake(server)
    try:
        assert status == 101
        one_dashboard(server)
        wait_until(
            lambda: not server.dashboards(),
            3 * HEARTBEAT_S + ENDS_WITHIN_S,
            "the dashboard of a silent socket to end",
        )
    finally:
        connection.close()


def test_half_sent_handshake_starts_nothing(server):
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    connection.sendall(b"GET /ws?width=80&height=24 HTTP/1.1\r\nUpgrade: websocket\r\n")
    try:
        status, other = ws_handshake(server)  # the server still answers others
        other.close()
        assert status == 101
    finally:
        connection.close()
    ended(server, "the dashboard of the complete handshake")


@pytest.mark.parametrize(
    "number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL], ids=lambda n: n.name
)
def test_stopping_the_server_ends_every_dashboard(server, browser, number):
    """SIGKILL stands for a crash: the dashboards get SIGTERM from the kernel
    (PR_SET_PDEATHSIG) and see their pipes close."""
    page = browser.new_page()
    page.goto(server.url)
    (browsers,) = wait_until(server.dashboards, 60, "the page's dashboard")
    page.wait_for_function("document.body.classList.contains('-first-byte')")
    # Up and idle between samples: a dashboard still starting dies of a broken pipe anyway.
    wait_until(lambda: idle(browsers), 60, "the page's dashboard up and idle")
    half = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    half.sendall(b"GET /ws HTTP/1.1\r\n")  # a handshake never finished
    status, silent = ws_handshake(server)  # connected, never says a word (the heartbeat
    try:  # would drop it after HEARTBEAT_S * 1.5: the server is stopped before)
        assert status == 101
        wait_until(lambda: len(server.dashboards()) == 2, 60, "the silent socket's dashboard")
        server.stop(number)
        wait_until(
            lambda: not session_processes(server.pid),
            ENDS_WITHIN_S,
            "every process of the server's session to end",
        )
    finally:
        silent.close()
        half.close()
        page.close()


def idle(pid: int) -> bool:
    """Its main thread (the event loop's) waits in epoll: between two samples."""
    try:
        with open(f"/proc/{pid}/wchan") as wchan:
            return "epoll_wait" in wchan.read()
    except FileNotFoundError:
        return False


def kill_session(session: int) -> None:
    for pid in session_processes(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
