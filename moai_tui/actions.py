"""What a user can change: shared by the plain-text commands and the dashboard.

Each action is one locked, atomic update of the state file; refusals raise before anything is
written, with the MoAI tools' own messages where they have one.
"""

from __future__ import annotations

import os
import signal
from contextlib import suppress
from dataclasses import replace

from moai_tui.context import Context
from moai_tui.errors import RefusedError, ToolMessage, UsageError
from moai_tui.model import JobRequest
from moai_tui.state import State, prune_dead_jobs, visible_device
from moai_tui.text.messages import IN_USE, RELEASE_NONE
from moai_tui.view import unavailable_reason


def existing_device(state: State, requested: int | None) -> int:
    """`requested` if it is one of the user's devices; None means the visible one."""
    if requested is None or requested < 0:
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
        raise UsageError(f"unknown flavor {flavor_name!r}: pick one from 'moai-tui switch'")
    reason = unavailable_reason(flavor, ctx.backend.sample(()))
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
    return released


def make_current(ctx: Context, device: int) -> None:
    def change(state: State) -> State:
        return replace(state, current=existing_device(state, device))

    ctx.store.update(change)


def remember_theme(ctx: Context, theme: str) -> None:
    ctx.store.update(lambda state: replace(state, theme=theme))
