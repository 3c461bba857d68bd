"""`moai-tui run -- CMD ARGS...`: dynamic allocation of real GPUs at the process level.

Under the state lock, the launcher picks a job id and the current flavor's number of GPUs (least
loaded first, never ones another `moai-tui run` holds) and records the job; it then starts CMD
confined to those GPUs (no shell): their UUIDs in CUDA_VISIBLE_DEVICES on NVIDIA, their ROCr
indices in ROCR_VISIBLE_DEVICES (and 0..n-1 in HIP_VISIBLE_DEVICES) on AMD, records the child's pid
with the child's own start time, forwards signals, and removes the record whatever the exit.

Signals: SIGINT, SIGTERM and SIGHUP are blocked from before the reservation to the end, and
taken with sigtimedwait: none can land between the reservation and the supervision and leave the
child unsupervised, or its record behind. The child starts with them unblocked. A signal the
terminal sent (Ctrl-C, hangup) already reached the child, which shares the terminal's process
group: only signals sent by a process (kill) are forwarded.
"""

from __future__ import annotations

import getpass
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from moai_tui.config import SlurmSettings
from moai_tui.context import Context
from moai_tui.errors import RefusedError, UsageError
from moai_tui.model import Flavor, Gpu, JobRequest
from moai_tui.state import State, new_job_id, process_started, prune_dead_jobs, visible_device
from moai_tui.text.messages import BUSY, NO_RESOURCES

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
T = TypeVar("T")
RETRY_S = 1.0
SI_KERNEL = 0x80  # siginfo si_code of a signal the kernel sent (a terminal's Ctrl-C, a hangup)


class _Wait(Exception):
    """Not now: the device or the GPUs are busy; the message says which."""


@dataclass(frozen=True)
class Visibility:
    """How a runtime's variable names the GPUs a process may use."""

    by_uuid: bool  # write UUIDs (stable whatever the enumeration order), else indices
    # Variables read after it that number the GPUs it leaves from 0 (and take UUIDs too): a
    # user's own value there restricts which GPUs moai-tui may pick, and the child gets 0..n-1.
    relative: tuple[str, ...] = ()


# CUDA takes NVML's UUIDs. ROCr takes indices or rocminfo's "GPU-<hex>" UUIDs, which amdsmi does
# not report in every version: indices, in ROCr's order (the amdsmi backend numbers GPUs so).
# HIP_VISIBLE_DEVICES (and CUDA_VISIBLE_DEVICES, read by HIP only where HIP_VISIBLE_DEVICES is
# unset) then pick among the GPUs ROCr shows, by position; PyTorch reads them to count devices.
VISIBILITY = {
    "CUDA_VISIBLE_DEVICES": Visibility(by_uuid=True),
    "ROCR_VISIBLE_DEVICES": Visibility(by_uuid=False, relative=("HIP_VISIBLE_DEVICES",)),
}


def _named(gpu: Gpu, entry: str, position: int | None = None) -> bool:
    """Whether an entry of a visibility variable names this GPU: digits are an index (its
    position among those left, for a relative variable), anything else a UUID or its prefix."""
    if entry.isdigit():
        return int(entry) == (gpu.index if position is None else position)
    return bool(gpu.uuid and gpu.uuid.startswith(entry))


def allowed_gpus(gpus: list[Gpu], env_name: str, environ=os.environ) -> list[Gpu]:
    """The GPUs a user's own visibility variables leave to moai-tui: the backend's (indices,
    UUIDs or UUID prefixes, as the runtime reads them), then those that number what it leaves;
    all of them where none is set."""
    allowed = gpus
    for position_based, name in [(False, env_name), *((True, n) for n in _relative(env_name))]:
        raw = environ.get(name)
        if raw is None:
            continue
        wanted = [entry.strip() for entry in raw.split(",") if entry.strip()]
        allowed = [
            g
            for number, g in enumerate(allowed)
            if any(_named(g, w, number if position_based else None) for w in wanted)
        ]
    return allowed


def _relative(env_name: str) -> tuple[str, ...]:
    rules = VISIBILITY.get(env_name)
    return rules.relative if rules else ()


def visibility_env(env_name: str, gpus: list[Gpu]) -> dict[str, str]:
    """What the child's environment says about its GPUs."""
    rules = VISIBILITY.get(env_name, Visibility(by_uuid=True))
    env = {env_name: ",".join((g.uuid if rules.by_uuid else "") or str(g.index) for g in gpus)}
    for name in rules.relative:
        env[name] = ",".join(str(number) for number in range(len(gpus)))
    return env


def free_device(ctx: Context, state: State) -> tuple[int, Flavor]:
    """The device a run goes to and its flavor: _Wait while another job holds the device."""
    device = visible_device(state)
    holder = state.job_on(device)
    if holder is not None:
        raise _Wait(BUSY.format(pid=holder.pid))
    flavor = ctx.catalog.get(state.device(device).flavor)
    if flavor is None:
        raise UsageError(
            f"device {device}'s flavor {state.device(device).flavor!r} is not in the "
            f"catalog here ({ctx.catalog.source}): pick one with 'moai-tui switch'"
        )
    return device, flavor


def reserve_when_free(reserve: Callable[[], T], wait: bool) -> T | int:
    """reserve() once it stops raising _Wait, saying each new reason once; with `wait` off,
    the reason is a refusal. A signal (blocked by the caller) ends the wait: its exit code."""
    said = None
    while True:
        try:
            return reserve()
        except _Wait as busy:
            if not wait:
                raise RefusedError(str(busy)) from None
            if str(busy) != said:
                said = str(busy)
                print(said, file=sys.stderr, flush=True)
            stop = signal.sigtimedwait(FORWARDED, RETRY_S)  # a signal ends the wait
            if stop is not None:
                return 128 + stop.si_signo


def _reserve(ctx: Context, command: str) -> tuple[JobRequest, list[Gpu]]:
    backend = ctx.backend
    env_name = backend.visible_devices_env
    reserved: list = []

    def take(state: State) -> State:
        state = prune_dead_jobs(state)
        device, flavor = free_device(ctx, state)
        snapshot = ctx.sample(state.jobs)
        held = {loc for job in state.jobs for loc in job.assigned}
        local = [g for node in snapshot.nodes for g in node.gpus]
        if flavor.gpus > len(local):
            raise RefusedError(
                f"flavor {flavor.name} needs {flavor.gpus} GPUs; this machine has {len(local)}: "
                "pick a smaller one with 'moai-tui switch'"
            )
        allowed = allowed_gpus(local, env_name)
        if flavor.gpus > len(allowed):
            names = [n for n in (env_name, *_relative(env_name)) if n in os.environ]
            said = " ".join(f"{n}={os.environ[n]!r}" for n in names)
            raise RefusedError(
                f"flavor {flavor.name} needs {flavor.gpus} GPUs; your {said} "
                f"allow{'s' if len(names) == 1 else ''} {len(allowed)} of this machine's: unset "
                f"{'it' if len(names) == 1 else 'them'} or pick a smaller flavor with "
                "'moai-tui switch'"
            )
        free = [g for g in allowed if not g.lost and g.location not in held]
        if len(free) < flavor.gpus:
            raise _Wait(NO_RESOURCES)
        free.sort(key=lambda g: (g.util or 0.0, g.mem_used_mib or 0, g.index))
        chosen = sorted(free[: flavor.gpus], key=lambda g: g.index)
        job = JobRequest(
            new_job_id(state, random.SystemRandom()),  # under the lock: ids never collide
            os.getpid(),
            device,
            command,
            flavor.gpus,
            1,
            time.time(),
            getpass.getuser(),
            "run",
            tuple(g.location for g in chosen),
        )
        reserved[:] = [job, *chosen]
        return replace(state, jobs=(*state.jobs, job))

    ctx.store.update(take)
    return reserved[0], reserved[1:]


def _release(ctx: Context, job_id: int) -> None:
    ctx.store.update(lambda s: replace(s, jobs=tuple(j for j in s.jobs if j.job_id != job_id)))


def run_command(
    ctx: Context,
    argv: list[str],
    wait: bool = True,
    slurm: SlurmSettings | None = None,
) -> int:
    """Run CMD on the current device's flavor; `slurm`: srun options given on the command line
    (config.toml's [slurm] otherwise)."""
    if not argv:
        raise UsageError("run needs a command: moai-tui run -- python train.py")
    if ctx.backend.scheduler == "slurm":
        from moai_tui.slurm_run import run_on_slurm

        return run_on_slurm(ctx, argv, wait, slurm or ctx.config.slurm)
    if slurm is not None:
        raise UsageError(
            "--partition, --account, --time, --qos and --srun-option are srun options: "
            f"they need the slurm backend, not {ctx.backend.name}"
        )
    if ctx.backend.visible_devices_env is None:
        raise RefusedError(
            f"moai-tui run starts processes on this machine's GPUs; the {ctx.backend.name} "
            f"backend cannot hand out any (on the simulator use 'moai-tui sim start')"
        )
    signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, signal.SIGCHLD))
    command = shlex.join(argv)
    reserved = reserve_when_free(lambda: _reserve(ctx, command), wait)
    if isinstance(reserved, int):
        return reserved
    job, gpus = reserved
    try:
        return _supervise(ctx, job, gpus, argv)
    finally:
        _release(ctx, job.job_id)


def _unblock_in_child() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (*FORWARDED, signal.SIGCHLD))


def _supervise(ctx: Context, job: JobRequest, gpus: list[Gpu], argv: list[str]) -> int:
    env = {
        **os.environ,
        **visibility_env(ctx.backend.visible_devices_env, gpus),
        "MOAI_TUI_JOB_ID": str(job.job_id),
    }
    try:
        child = subprocess.Popen(argv, env=env, preexec_fn=_unblock_in_child)  # never a shell
    except OSError as error:
        print(f"moai-tui run: cannot start {argv[0]!r}: {error.strerror}", file=sys.stderr)
        return 127
    # Record the child's pid and its own start time: smi shows it, `smi -r` signals it, and a
    # killed launcher's entry stays exactly while this child (not a reused pid) holds the GPUs.
    started = process_started(child.pid) or time.time()
    try:
        ctx.store.update(
            lambda s: replace(
                s,
                jobs=tuple(
                    replace(j, pid=child.pid, submitted=started) if j.job_id == job.job_id else j
                    for j in s.jobs
                ),
            )
        )
    except BaseException:  # the state cannot say who holds the GPUs: the child must not run
        child.kill()
        child.wait()
        raise
    while child.poll() is None:
        info = signal.sigtimedwait((*FORWARDED, signal.SIGCHLD), 1.0)
        if info is not None and info.si_signo != signal.SIGCHLD and info.si_code != SI_KERNEL:
            child.send_signal(info.si_signo)
    code = child.returncode
    return code if code >= 0 else 128 - code
