"""The user's accelerators (devices 0..4), which one is current, and their jobs.

Kept in a TOML file. Every change happens under an exclusive lock and lands with an atomic
rename, so a reader sees the old file or the new one, never half of one. A file that does not
parse is reported and left untouched.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import tomli_w

from moai_tui.compat import tomllib
from moai_tui.errors import MoaiError, UsageError
from moai_tui.model import JobRequest
from moai_tui.parsing import is_number

MAX_DEVICES = 5
VISIBLE_DEVICE_ENV = "MOREH_VISIBLE_DEVICE"
DEFAULT_FLAVOR = "xLarge.512GB"
LOCK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Device:
    id: int
    flavor: str


@dataclass(frozen=True)
class State:
    devices: tuple[Device, ...] = (Device(0, DEFAULT_FLAVOR),)
    current: int = 0
    jobs: tuple[JobRequest, ...] = ()
    theme: str | None = None

    def device(self, device_id: int) -> Device | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def job_on(self, device_id: int) -> JobRequest | None:
        return next((j for j in self.jobs if j.device == device_id), None)

    def with_flavor(self, device_id: int, flavor: str) -> State:
        devices = tuple(replace(d, flavor=flavor) if d.id == device_id else d for d in self.devices)
        return replace(self, devices=devices)


def _job_from(entry: dict) -> JobRequest:
    return JobRequest(
        job_id=int(entry["job_id"]),
        pid=int(entry["pid"]),
        device=int(entry["device"]),
        command=str(entry["command"]),
        gpus=int(entry["gpus"]),
        nodes=int(entry["nodes"]),
        submitted=float(entry["submitted"]),
        user=str(entry["user"]),
        kind=str(entry.get("kind", "sim")),
        assigned=tuple(str(g) for g in entry.get("assigned", ())),
    )


def parse_state(text: str) -> State:
    """A State from the file's text; raises ValueError with the reason when it is not valid."""
    if not text.strip():
        raise ValueError("the file is empty")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"not valid TOML ({error})") from None
    if data.get("version") != 1:
        raise ValueError(f"unknown version {data.get('version')!r} (expected 1)")
    try:
        devices = tuple(Device(int(d["id"]), str(d["flavor"])) for d in data["devices"])
        jobs = tuple(_job_from(j) for j in data.get("jobs", ()))
        current = int(data["current"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"missing or malformed entry ({error!r})") from None
    ids = [d.id for d in devices]
    if not devices or len(devices) > MAX_DEVICES or len(set(ids)) != len(ids):
        raise ValueError(f"needs 1 to {MAX_DEVICES} devices with distinct ids, has {ids}")
    if any(not 0 <= i < MAX_DEVICES for i in ids):
        raise ValueError(f"device ids must be 0-{MAX_DEVICES - 1}, has {ids}")
    if current not in ids:
        raise ValueError(f"current device {current} is not one of the devices {ids}")
    if any(job.device not in ids for job in jobs):
        raise ValueError("a job names a device that does not exist")
    theme = data.get("theme")
    return State(devices, current, jobs, theme if isinstance(theme, str) else None)


def dump_state(state: State) -> str:
    doc: dict = {"version": 1, "current": state.current}
    if state.theme:
        doc["theme"] = state.theme
    doc["devices"] = [{"id": d.id, "flavor": d.flavor} for d in state.devices]
    doc["jobs"] = [
        {
            "job_id": j.job_id,
            "pid": j.pid,
            "device": j.device,
            "command": j.command,
            "gpus": j.gpus,
            "nodes": j.nodes,
            "submitted": j.submitted,
            "user": j.user,
            "kind": j.kind,
            "assigned": list(j.assigned),
        }
        for j in state.jobs
    ]
    return tomli_w.dumps(doc)


class StateStore:
    def __init__(self, directory: Path, default_flavor: str = DEFAULT_FLAVOR):
        self.directory = directory
        self.default = State(devices=(Device(0, default_flavor),))
        self.path = directory / "state.toml"
        self._lock_path = directory / ".state.lock"

    def load(self) -> State:
        """Readers need no lock: writers replace the file in one rename."""
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return self.default
        except (OSError, UnicodeDecodeError) as error:
            raise MoaiError(f"state file {self.path}: cannot read it ({error})") from None
        try:
            return parse_state(text)
        except ValueError as error:
            raise MoaiError(
                f"state file {self.path} is invalid: {error}; it was left as it is: "
                f"move it aside (mv {self.path} {self.path}.bad) to start afresh"
            ) from None

    def stamp(self) -> tuple[int, int, int] | None:
        """(inode, mtime in ns, size) of the file, None when it cannot be seen: a change in
        any of them means the file was written."""
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    @contextmanager
    def _locked(self):
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise MoaiError(self._write_error(error)) from None
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise MoaiError(
                            f"state file {self.path} is locked by another moai-tui for over "
                            f"{LOCK_TIMEOUT_S:.0f} s; try again"
                        ) from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)

    def _write_error(self, error: OSError) -> str:
        return (
            f"cannot save state to {self.path}: {error.strerror or error}; nothing was changed "
            f"(check the directory's permissions and free space, or set MOAI_TUI_CONFIG_DIR)"
        )

    def _write(self, state: State) -> None:
        data = dump_state(state).encode("utf-8")
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            tmp = None
            self._sync_directory()
        except OSError as error:
            if tmp is not None:
                with suppress(OSError):
                    os.unlink(tmp)
            raise MoaiError(self._write_error(error)) from None

    def _sync_directory(self) -> None:
        """The rename is durable only once the directory is on disk: without this a crash can
        bring back the state from before a committed switch. The rename has happened either
        way, so a filesystem that cannot sync a directory is no reason to report a failure."""
        with suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _remove_debris(self) -> None:
        """Temporary files of writers killed before their rename. Only called under the lock,
        when no other writer can be half-way."""
        for leftover in self.directory.glob(".state.*.tmp"):
            with suppress(OSError):
                leftover.unlink()

    def update(self, change: Callable[[State], State]) -> State:
        """Apply change to the newest state under the lock; write only if it changed anything."""
        with self._locked():
            before = self.load()
            after = change(before)
            if after != before:
                self._remove_debris()
                self._write(after)
            return after


def new_job_id(state: State, rng: random.Random) -> int:
    """A six-digit job id no job of `state` has. Called inside the locked update that adds the
    job, so two launches can never pick the same one."""
    taken = {j.job_id for j in state.jobs}
    while True:
        candidate = rng.randrange(100000, 1000000)
        if candidate not in taken:
            return candidate


def visible_device(state: State, environ: dict | os._Environ = os.environ) -> int:
    """The device a command works on: MOREH_VISIBLE_DEVICE if set, else the current one."""
    raw = environ.get(VISIBLE_DEVICE_ENV)
    if raw is None or raw == "":
        return state.current
    ids = [d.id for d in state.devices]
    if not is_number(raw.strip()) or int(raw) not in ids:
        raise UsageError(
            f"{VISIBLE_DEVICE_ENV}={raw!r} is not one of your devices {ids}; "
            f"unset it or list devices with 'moai-tui device --list'"
        )
    return int(raw)


def process_started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if there is none."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_alive(pid: int, since: float) -> bool:
    """Whether `pid` still runs and is the process started at `since`, not a later process that
    reused the pid, whoever owns it (a pid reused by another user's process is not ours)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= since + 2.0
    except psutil.AccessDenied:  # cannot tell (a hardened /proc): keep the GPUs held
        return True
    except psutil.Error:
        return False


# Jobs a `moai-tui run` process holds: on this machine's GPUs ("run") or as a Slurm allocation
# ("slurm", the pid is srun's). They end with that process.
LAUNCHED = ("run", "slurm")


def prune_dead_jobs(state: State) -> State:
    """Drop `moai-tui run` jobs whose process is gone (a launcher that was killed)."""
    alive = tuple(
        j for j in state.jobs if j.kind not in LAUNCHED or process_alive(j.pid, j.submitted)
    )
    return state if alive == state.jobs else replace(state, jobs=alive)
