"""`moai-tui serve` end to end: a real server, a real headless Chromium (Debian's, driven by
Playwright), the terminal's canvas read back by OCR, the switch checked with `moai-tui smi`.
Screenshots are kept under tmp/artefacts/ (MOAI_TUI_ARTEFACTS moves them)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import run_cli
from served import (
    ARTEFACTS,
    Served,
    http_get,
    ocr_page,
    wait_for_text,
    wait_until,
    ws_handshake,
)

from moai_tui.tui.screens import DIGIT_WINDOW_S

HEADER = "Flavor"  # a heading of the devices table, light on dark: OCR reads it reliably
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture
def served(config_dir):
    started: list[Served] = []

    def start(*args: str) -> Served:
        started.append(Served(*args))
        return started[-1]

    yield start
    for server in started:
        server.close()


def current_flavor() -> str:
    """As another process sees it: `moai-tui smi` reads the state file."""
    result = run_cli("smi", "--json")
    assert result.returncode == 0, result.stderr
    (device,) = [d for d in json.loads(result.stdout)["devices"] if d["current"]]
    return device["flavor"]


def test_flavor_switch_from_a_browser(browser, served, config_dir):
    server = served("--token")
    assert current_flavor() == "xLarge.512GB"
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server.url)
    wait_for_text(page, HEADER, shot=ARTEFACTS / "serve-dashboard.png")
    assert "token" not in page.url  # taken out of the address bar; a cookie carries it
    page.keyboard.press("f")  # no click first: the page focuses the terminal
    wait_for_text(page, "choose a flavor", shot=ARTEFACTS / "serve-picker.png")
    page.keyboard.press("8")
    time.sleep(DIGIT_WINDOW_S + 0.2)  # "8" alone, not the first digit of "8x"
    page.keyboard.press("Enter")
    wait_until(lambda: current_flavor() == "4xLarge.2048GB", 30, "the switch")
    wait_for_text(page, "4xLarge.2048GB", shot=ARTEFACTS / "serve-switched.png")
    page.close()
    wait_until(lambda: not server.dashboards(), 15, "the dashboard of a closed tab to end")


def test_read_only_in_a_browser(browser, served, config_dir):
    server = served("--read-only")
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server.url)
    text = wait_for_text(page, HEADER, "pause")
    assert "flavor" not in text.replace("Flavor", "") and "stop job" not in text  # footer
    page.keyboard.press("f")
    page.keyboard.press("?")  # keys are handled in order: once help shows, "f" was handled
    text = wait_for_text(page, "keys", shot=ARTEFACTS / "serve-read-only-help.png")
    assert "choose a flavor" not in text and "flavor picker" not in text
    assert current_flavor() == "xLarge.512GB"
    page.close()


def test_renders_cleanly_after_resizes(browser, served, config_dir):
    """Resizes during start-up and after: the screen at the end reads as a fresh page does.
    Stale copies of panels (issue 16's screenshot) read as extra and cut words."""
    server = served()
    sizes = [(900, 600), (1400, 900), (700, 450), (1280, 800), (1000, 700)]
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server.url)
    for width, height in sizes:  # during start-up: before the first frame, or just after
        page.set_viewport_size({"width": width, "height": height})
        time.sleep(0.1)
    wait_for_text(page, HEADER)
    for width, height in sizes * 2:
        page.set_viewport_size({"width": width, "height": height})
        time.sleep(0.3)
    page.set_viewport_size(VIEWPORT)
    page.keyboard.press("p")  # paused: both pages show the same data from here on
    wait_for_text(page, HEADER, "paused")
    fresh_page = browser.new_page(viewport=VIEWPORT)
    fresh_page.goto(server.url)
    wait_for_text(fresh_page, HEADER)
    fresh_page.keyboard.press("p")
    fresh = words(wait_for_text(fresh_page, HEADER, "paused", shot=ARTEFACTS / "serve-fresh.png"))
    assert len(fresh) >= 15, fresh
    # The browser sends its last size on its own schedule, after the key at times: the page is
    # read until it matches. A stale copy of a panel stays, so it still fails here.
    deadline = time.monotonic() + 30
    while (resized := words(ocr_page(page, ARTEFACTS / "serve-resized.png"))) != fresh:
        assert time.monotonic() < deadline, (resized, fresh)
        time.sleep(0.5)
    page.close()
    fresh_page.close()


# The dashboard's own words, each in one place on the screen: a stale copy of a panel shows
# one twice or cut. OCR's readings of the GPU grid's block cells are noise that differs from
# one page to the next, so only these are compared.
UI_WORDS = {
    "cluster",
    "GPUs",
    "free",
    "whole",
    "util",
    "fits",
    "Flavor",
    "Memory",
    "Util",
    "Power",
    "State",
    "idle",
    "would",
    "start",
    "Cluster",
    "Device",
    "scale",
    "last",
    "Jobs",
    "running",
    "sort",
    "User",
    "Command",
    "paused",
    "resumes",
    "simulator",
    "yours",
    "lost",
    "python",
    "torchrun",
    "deepspeed",
    "GPU",
    "Runtime",
}


def words(text: str) -> set[str]:
    """The dashboard's own words that OCR read (see UI_WORDS)."""
    return {w for w in re.findall(r"[A-Za-z]+", text) if w in UI_WORDS}


# The guard: checked without a browser, status by status -------------------------------------
def test_token_checked_on_every_http_and_websocket_request(served, config_dir):
    server = served("--token", "s3cret-token")
    assert server.url.endswith("?token=s3cret-token")
    for url in (server.base, f"{server.base}?token=wrong", f"{server.base}static/js/textual.js"):
        status, body, _ = http_get(url)
        assert status == 403 and "token" in body, url
    status, connection = ws_handshake(server)
    connection.close()
    assert status == 403 and not server.dashboards()
    status, _, headers = http_get(server.url)  # the printed address sets the cookie
    assert status == 200
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    assert http_get(f"{server.base}static/js/textual.js", {"Cookie": cookie})[0] == 200
    status, connection = ws_handshake(server, {"Cookie": cookie, "Origin": "http://evil.test"})
    connection.close()
    assert status == 403  # another site's page, even with the user's cookie
    status, connection = ws_handshake(
        server, {"Cookie": cookie, "Origin": f"http://127.0.0.1:{server.port}"}
    )
    assert status == 101
    wait_until(server.dashboards, 15, "a dashboard for the connection")
    connection.close()
    wait_until(lambda: not server.dashboards(), 15, "the dashboard of a closed socket to end")


def test_without_the_token_the_browser_is_refused(browser, served, config_dir):
    server = served("--token")
    page = browser.new_page()
    response = page.goto(server.base)
    assert response.status == 403 and "token" in page.content()
    # A page of its own origin (no cookie) opening the dashboard's socket: refused too.
    outcome = page.evaluate(
        """url => new Promise(done => {
            const socket = new WebSocket(url);
            socket.onopen = () => done("open");
            socket.onclose = () => done("closed");
        })""",
        server.base.replace("http", "ws") + "ws",
    )
    assert outcome == "closed" and not server.dashboards()
    page.close()


def test_loopback_without_token_answers_loopback_names_only(served, config_dir):
    server = served()
    # DNS rebinding: a page of rebound.test, its name pointed at 127.0.0.1, would reach us.
    assert http_get(server.base, {"Host": f"rebound.test:{server.port}"})[0] == 403
    assert http_get(server.base, {"Host": f"localhost:{server.port}"})[0] == 200


def test_non_loopback_address_needs_a_token(config_dir):
    result = run_cli("serve", "--listen", "0.0.0.0:0")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("moai-tui: ") and "--token" in line


@pytest.mark.parametrize(
    "args, named",
    [
        (["--interval", "0.01"], "--interval"),
        (["--theme", "nope"], "unknown theme 'nope'"),
        (["--listen", "localhost"], "--listen"),
        (["--token", "short"], "--token"),
        (["--backend", "nonsense"], "nonsense"),
    ],
)
def test_bad_options_are_one_line_before_serving(config_dir, args, named):
    result = run_cli("serve", "--listen", "127.0.0.1:0", *args, timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("moai-tui: ") and named in line


def test_missing_web_extra_is_one_line_naming_it(config_dir):
    code = (
        "import sys; sys.modules['textual_serve'] = None\n"
        "from moai_tui.cli import main; sys.exit(main(['serve']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "pip install 'moai-tui[web]'" in line
