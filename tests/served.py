"""A real `moai-tui serve` for tests: started in a session of its own (so every process it starts
can be found by session id, whatever becomes of the process tree), a headless Chromium driven by
Playwright with Debian's chromium, and the canvas read back by OCR (tesseract)."""

from __future__ import annotations

import base64
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import moai_exe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
assert CHROMIUM, "chromium is required (installed by .ci/run)"
assert shutil.which("tesseract"), "tesseract is required (tesseract-ocr, installed by .ci/run)"
ARTEFACTS = Path(
    os.environ.get("MOAI_TUI_ARTEFACTS", Path(__file__).resolve().parents[1] / "tmp" / "artefacts")
)


def wait_until(condition, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def session_processes(session: int) -> list[int]:
    """Every live process of a session, found in /proc: reparented orphans included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry))
    return found


class Served:
    """`moai-tui serve` on a free loopback port; `url` carries the token when there is one."""

    def __init__(self, *args: str, env: dict | None = None):
        self.process = subprocess.Popen(
            [moai_exe(), "serve", "--listen", "127.0.0.1:0", "--backend", "simulator", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.pid = self.process.pid
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        line = self.process.stdout.readline() if ready else ""
        match = re.search(r"http://\S+", line)
        if not match:
            self.close()
            raise AssertionError(f"moai-tui serve announced no address: {line!r}")
        self.url = match.group(0)
        self.base = self.url.split("?")[0]
        self.port = int(self.base.rsplit(":", 1)[1].strip("/"))

    def dashboards(self) -> list[int]:
        return [pid for pid in session_processes(self.pid) if pid != self.pid]

    def stop(self, number: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, number)

    def close(self) -> None:
        """Whatever a test left: the server and everything in its session."""
        for pid in session_processes(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)
        self.process.stdout.close()
        self.process.stderr.close()


def ocr(png: bytes) -> str:
    """The terminal's text as tesseract reads it (the terminal draws on a canvas)."""
    result = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "6"],
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},  # one thread: the machine is shared
        input=png,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout.decode("utf-8", "replace")


def ocr_page(page, shot: Path) -> str:
    """The page's text now; its screenshot is kept as an artefact."""
    png = page.screenshot()
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(png)
    return ocr(png)


def wait_for_text(page, *needles: str, timeout: float = 30.0, shot: Path | None = None) -> str:
    """OCR the page until every needle shows; the last screenshot is kept as an artefact."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        png = page.screenshot()
        text = ocr(png)
        if all(needle in text for needle in needles):
            if shot is not None:
                shot.parent.mkdir(parents=True, exist_ok=True)
                shot.write_bytes(png)
            return text
        time.sleep(0.3)
    raise AssertionError(f"{needles} never showed; OCR read:\n{text}")


def http_get(url: str, headers: dict | None = None) -> tuple[int, str, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def ws_handshake(served: Served, headers: dict | None = None) -> tuple[int, socket.socket]:
    """A WebSocket opening handshake by hand: the status line, and the socket left open."""
    connection = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    lines = [
        "GET /ws?width=100&height=30 HTTP/1.1",
        f"Host: 127.0.0.1:{served.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = connection.recv(4096)
        if not chunk:
            break
        reply += chunk
    return int(reply.split(b" ", 2)[1]), connection
