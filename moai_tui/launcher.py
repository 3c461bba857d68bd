"""`moai-tui run -- CMD ARGS...`: dynamic allocation of real GPUs at the process level.

Under the state lock, the launcher picks the current flavor's number of GPUs (least loaded
first, never ones another `moai-tui run` holds) and records the job; it then starts CMD with
CUDA_VISIBLE_DEVICES set (no shell), forwards signals, and removes the record whatever the exit.
"""

from __future__ import annotations

import getpass
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace

from moai_tui.context import Context
from moai_tui.errors import MoaiError, RefusedError, UsageError
from moai_tui.model import JobRequest
from moai_tui.state import State, prune_dead_jobs, visible_device
from moai_tui.text.messages import BUSY, NO_RESOURCES

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RETRY_S = 1.0


class _Wait(Exception):
    """Not now: the device or the GPUs are busy; the message says which."""


def _reserve(ctx: Context, job_id: int, command: str) -> JobRequest:
    backend = ctx.backend
    reserved: list[JobRequest] = []

    def take(state: State) -> State:
        state = prune_dead_jobs(state)
        device = visible_device(state)
        holder = state.job_on(device)
        if holder is not None:
            raise _Wait(BUSY.format(pid=holder.pid))
        flavor = ctx.catalog.get(state.device(device).flavor)
        if flavor is None:
            raise UsageError(
                f"device {device}'s flavor {state.device(device).flavor!r} is not in this "
                f"machine's catalog: pick one with 'moai-tui switch'"
            )
        snapshot = backend.sample(state.jobs)
        held = {loc for job in state.jobs for loc in job.assigned}
        local = [g for node in snapshot.nodes for g in node.gpus]
        if flavor.gpus > len(local):
            raise RefusedError(
                f"flavor {flavor.name} needs {flavor.gpus} GPUs; this machine has {len(local)}: "
                "pick a smaller one with 'moai-tui switch'"
            )
        free = [g for g in local if not g.lost and g.location not in held]
        if len(free) < flavor.gpus:
            raise _Wait(NO_RESOURCES)
        free.sort(key=lambda g: (g.util or 0.0, g.mem_used_mib or 0, g.index))
        chosen = sorted(free[: flavor.gpus], key=lambda g: g.index)
        job = JobRequest(
            job_id,
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
        reserved.append(job)
        return replace(state, jobs=(*state.jobs, job))

    ctx.store.update(take)
    return reserved[0]


def _release(ctx: Context, job_id: int) -> None:
    ctx.store.update(lambda s: replace(s, jobs=tuple(j for j in s.jobs if j.job_id != job_id)))


def run_command(ctx: Context, argv: list[str], wait: bool = True) -> int:
    if not argv:
        raise UsageError("run needs a command: moai-tui run -- python train.py")
    if ctx.backend.visible_devices_env is None:
        raise RefusedError(
            f"moai-tui run starts processes on this machine's GPUs; the {ctx.backend.name} "
            f"backend cannot hand out any (on the simulator use 'moai-tui sim start')"
        )
    taken = {j.job_id for j in ctx.store.load().jobs}
    job_id = random.SystemRandom().choice(
        [n for n in range(100000, 1000000, 7919) if n not in taken]
    )
    command = " ".join(argv)
    said = None
    while True:
        try:
            job = _reserve(ctx, job_id, command)
            break
        except _Wait as busy:
            if not wait:
                raise RefusedError(str(busy)) from None
            if str(busy) != said:
                said = str(busy)
                print(said, file=sys.stderr, flush=True)
            time.sleep(RETRY_S)
    try:
        return _supervise(ctx, job, argv)
    finally:
        _release(ctx, job.job_id)


def _supervise(ctx: Context, job: JobRequest, argv: list[str]) -> int:
    indices = [loc.rsplit(":", 1)[1] for loc in job.assigned]
    env = {
        **os.environ,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        ctx.backend.visible_devices_env: ",".join(indices),
        "MOAI_TUI_JOB_ID": str(job.job_id),
    }
    try:
        child = subprocess.Popen(argv, env=env)  # a list, never a shell
    except OSError as error:
        print(f"moai-tui run: cannot start {argv[0]!r}: {error.strerror}", file=sys.stderr)
        return 127
    # Record the child's pid: smi shows it, `smi -r` signals it, and a killed launcher's
    # entry stays only while the child still holds the GPUs.
    ctx.store.update(
        lambda s: replace(
            s,
            jobs=tuple(replace(j, pid=child.pid) if j.job_id == job.job_id else j for j in s.jobs),
        )
    )
    previous = {
        sig: signal.signal(sig, lambda number, _frame: child.send_signal(number))
        for sig in FORWARDED
    }
    try:
        code = child.wait()
    except MoaiError:
        child.kill()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code
