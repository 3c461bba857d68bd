"""What a user can change: shared by the plain-text commands and the dashboard.

Each action is one locked, atomic update of the state file; refusals raise before anything is
written, with the MoAI tools' own messages where they have one.
"""

from __future__ import annotations

import getpass
import os
import random
import signal
from contextlib import suppress
from dataclasses import replace

from moai_tui.context import Context
from moai_tui.errors import RefusedError, ToolMessage, UsageError
from moai_tui.model import JobRequest
from moai_tui.state import MAX_DEVICES, Device, State, new_job_id, prune_dead_jobs, visible_device
from moai_tui.text.messages import IN_USE, RELEASE_NONE
from moai_tui.view import unavailable_reason

LIST_FLAVORS = "moai-tui switch --list"


def existing_device(state: State, requested: int | None) -> int:
    """`requested` if it is one of the user's devices; None means the visible one."""
    if requested is None:
        return visible_device(state)
    if state.device(requested) is None:
        raise UsageError(
            f"device {requested} does not exist: your devices are {[d.id for d in state.devices]}"
        )
    return requested


def switch_flavor(ctx: Context, flavor_name: str, device: int | None = None) -> None:
    """Set a device's flavor, refusing while a job holds it or where the flavor cannot run."""
    flavor = ctx.catalog.get(flavor_name)
    if flavor is None:
        raise UsageError(f"unknown flavor {flavor_name!r}: list them with '{LIST_FLAVORS}'")
    reason = unavailable_reason(flavor, ctx.sample(()))
    if reason:
        raise RefusedError(f"{flavor_name} is not available here: it {reason}")

    def change(state: State) -> State:
        state = prune_dead_jobs(state)
        target = existing_device(state, device)
        if state.job_on(target) is not None:
            raise ToolMessage(IN_USE)
        return state.with_flavor(target, flavor_name)

    ctx.store.update(change)


def release(ctx: Context, device: int | None = None) -> list[JobRequest]:
    """Stop the job on a device and free its GPUs (`smi -r`); refuses when nothing runs."""
    released: list[JobRequest] = []

    def stop(state: State) -> State:
        state = prune_dead_jobs(state)
        target = existing_device(state, device)
        released[:] = [j for j in state.jobs if j.device == target]
        return replace(state, jobs=tuple(j for j in state.jobs if j.device != target))

    ctx.store.update(stop)
    if not released:
        raise ToolMessage(RELEASE_NONE)
    for job in released:
        if job.kind == "run":  # its launcher sees the exit, cleans up, passes the code on
            with suppress(ProcessLookupError, PermissionError):
                os.kill(job.pid, signal.SIGTERM)
        elif job.kind == "slurm":  # scancel: the same, through Slurm
            from moai_tui.slurm_run import release as release_allocation

            release_allocation(job)
    return released


def make_current(ctx: Context, device: int) -> None:
    def change(state: State) -> State:
        return replace(state, current=existing_device(state, device))

    ctx.store.update(change)


def add_device(ctx: Context, flavor_name: str | None = None) -> int:
    """A new device (the lowest free id) of `flavor_name`, or of the visible device's flavor;
    returns its id."""
    if flavor_name is not None and ctx.catalog.get(flavor_name) is None:
        raise UsageError(f"unknown flavor {flavor_name!r}: list them with '{LIST_FLAVORS}'")
    added: list[int] = []

    def add(state: State) -> State:
        free = [i for i in range(MAX_DEVICES) if state.device(i) is None]
        if not free:
            raise RefusedError(
                f"cannot create a device: at most {MAX_DEVICES} per user (0-{MAX_DEVICES - 1}); "
                "remove one with 'moai-tui device --rm ID'"
            )
        name = flavor_name or state.device(visible_device(state)).flavor
        added[:] = [free[0]]
        devices = tuple(sorted((*state.devices, Device(free[0], name)), key=lambda d: d.id))
        return replace(state, devices=devices)

    ctx.store.update(add)
    return added[0]


def remove_device(ctx: Context, device: int) -> None:
    """Remove a device that holds no job; the first remaining one becomes current if needed."""

    def remove(state: State) -> State:
        state = prune_dead_jobs(state)
        target = existing_device(state, device)
        if len(state.devices) == 1:
            raise RefusedError(f"cannot remove device {target}: it is your only device")
        if state.job_on(target) is not None:
            raise RefusedError(
                f"cannot remove device {target}: a job runs on it; "
                f"stop it with 'moai-tui smi -r -i {target}'"
            )
        devices = tuple(d for d in state.devices if d.id != target)
        current = state.current if state.current != target else devices[0].id
        return replace(state, devices=devices, current=current)

    ctx.store.update(remove)


def start_sim_job(ctx: Context, command: str, device: int | None = None) -> JobRequest:
    """A simulated job on a device (the visible one by default) that holds none."""
    if not command.strip():
        raise UsageError('sim start needs a command, e.g. moai-tui sim start "python train.py"')
    if ctx.backend.replay_status() is not None:  # saved, and never shown
        raise RefusedError(
            f"sim start: the {ctx.backend.name} backend plays back what was recorded, so a "
            "simulated job would never appear in it (use --backend simulator)"
        )
    from moai_tui.backends.simulator import sim_clock

    now = sim_clock()  # a bad MOAI_TUI_SIM_TIME is reported before the lock is taken
    rng = random.SystemRandom()
    started: list[JobRequest] = []

    def start(state: State) -> State:
        target = existing_device(state, device)
        holder = state.job_on(target)
        if holder is not None:
            raise RefusedError(
                f"device {target} is in use by job {holder.job_id} ({holder.command}); "
                f"stop it first with 'moai-tui sim stop --device {target}'"
            )
        flavor = ctx.catalog.get(state.device(target).flavor)
        if flavor is None:
            raise UsageError(f"device {target}'s flavor is not in the catalog: switch it first")
        job = JobRequest(
            new_job_id(state, rng),
            rng.randrange(10000, 4000000),
            target,
            command,
            flavor.gpus,
            flavor.nodes,
            now,
            getpass.getuser(),
            "sim",
        )
        started[:] = [job]
        return replace(state, jobs=(*state.jobs, job))

    ctx.store.update(start)
    return started[0]


def remember_theme(ctx: Context, theme: str) -> None:
    ctx.store.update(lambda state: replace(state, theme=theme))
