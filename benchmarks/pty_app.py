"""Run a full-screen program in a pseudo-terminal of a given size, drain its output, and read
its CPU time and memory with psutil, as performance.md describes."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import termios
import threading
import time

import psutil

ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>]|\x1b\][^\x07]*\x07")


class PtyApp:
    def __init__(self, argv: list[str], env: dict, size=(120, 40)):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", **env},
            start_new_session=True,
        )
        os.close(slave)
        self.output = bytearray()
        self.lock = threading.Lock()
        self.events: list[tuple[float, bytes]] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        self.ps = psutil.Process(self.process.pid)

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.output += chunk
                self.events.append((time.perf_counter(), chunk))

    def text_since(self, index: int) -> str:
        with self.lock:
            data = bytes(self.output[index:])
        return ESCAPES.sub(b"", data).decode("utf-8", "replace")

    def mark(self) -> int:
        with self.lock:
            return len(self.output)

    def wait_for(self, needle: str, since: int = 0, timeout: float = 20.0) -> float:
        """Seconds from now until `needle` shows in the output written after `since`."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if needle in self.text_since(since):
                return time.perf_counter() - start
            time.sleep(0.002)
        raise TimeoutError(f"{needle!r} not shown within {timeout} s")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 1e6

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        os.close(self.master)
