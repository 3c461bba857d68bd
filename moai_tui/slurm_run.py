"""`moai-tui run -- CMD` on Slurm: the current device's flavor becomes an srun allocation.

The platform's promise through Slurm itself: `srun --nodes=N --gpus-per-node=G
--ntasks-per-node=1 CMD` asks for the flavor's GPUs when CMD starts and gives them back when it
ends (an allocation srun creates lives exactly as long as srun). CMD runs once on each node;
Slurm sets CUDA_VISIBLE_DEVICES there. A job that has to wait prints the platform's message
instead of srun's and starts by itself.

The record in the state file holds the device from before srun starts, under a provisional
negative id; once Slurm names the job (found by its unique job name) the record carries Slurm's
job id, which `smi` then shows, and srun's pid, whose life is the allocation's. Ctrl-C, SIGTERM
and SIGHUP cancel the allocation (srun cancels on them; a signal sent to the launcher is passed
on), and srun dies with the launcher even when the launcher is killed outright (parent-death
signal), so a killed launcher never leaves an allocation behind.
"""

from __future__ import annotations

import ctypes
import getpass
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace

from moai_tui.backends.slurm import REQUEST_KIND
from moai_tui.config import SlurmSettings
from moai_tui.context import Context
from moai_tui.errors import RefusedError
from moai_tui.launcher import FORWARDED, SI_KERNEL, _Wait, free_device, reserve_when_free
from moai_tui.model import Flavor, JobRequest
from moai_tui.state import State, new_job_id, process_started, prune_dead_jobs
from moai_tui.text.messages import NO_RESOURCES
from moai_tui.view import fits_now, unavailable_reason

JOB_NAME = "moai-{token}"
LOOKUP_S = 0.1  # how often to ask squeue for the new job's id until Slurm lists it
PR_SET_PDEATHSIG = 1


def srun_argv(flavor: Flavor, name: str, settings: SlurmSettings, argv: list[str], wait: bool):
    """The flavor as an srun request: G GPUs on each of N nodes, one task per node (CMD starts
    its own ranks, as torchrun does); a flavor that does not split evenly asks for G in all."""
    if flavor.gpus % flavor.nodes == 0:
        gpus = [f"--gpus-per-node={flavor.gpus // flavor.nodes}"]
    else:
        gpus = [f"--gpus={flavor.gpus}"]
    return [
        "srun",
        "--quiet",  # the platform's words while waiting, not srun's
        "--quit-on-interrupt",  # one Ctrl-C cancels, as on the platform
        f"--job-name={name}",
        f"--nodes={flavor.nodes}",
        "--ntasks-per-node=1",
        *gpus,
        *([] if wait else ["--immediate"]),
        *settings.srun_arguments(),
        *argv,
    ]


def _reserve(ctx: Context, command: str, wait: bool) -> tuple[JobRequest, Flavor]:
    # Asked before the state lock is taken: a slow slurmctld must not hold every other
    # moai-tui of the user's waiting on the lock.
    snapshot = ctx.sample(prune_dead_jobs(ctx.store.load()).jobs)
    reserved: list = []

    def take(state: State) -> State:
        state = prune_dead_jobs(state)
        device, flavor = free_device(ctx, state)
        reason = unavailable_reason(flavor, snapshot)
        if reason:
            raise RefusedError(
                f"flavor {flavor.name} {reason}: pick a smaller one with 'moai-tui switch'"
            )
        if not wait and not fits_now(flavor, snapshot):
            raise _Wait(NO_RESOURCES)
        # Negative until Slurm names the job: never mistaken for one of Slurm's ids.
        job = JobRequest(
            -new_job_id(state, random.SystemRandom()),
            os.getpid(),
            device,
            command,
            flavor.gpus,
            flavor.nodes,
            time.time(),
            getpass.getuser(),
            REQUEST_KIND,
        )
        reserved[:] = [job, flavor]
        return replace(state, jobs=(*state.jobs, job))

    ctx.store.update(take)
    return reserved[0], reserved[1]


def run_on_slurm(ctx: Context, argv: list[str], wait: bool, settings: SlurmSettings) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, signal.SIGCHLD))
    command = shlex.join(argv)
    reserved = reserve_when_free(lambda: _reserve(ctx, command, wait), wait)
    if isinstance(reserved, int):
        return reserved
    job, flavor = reserved
    record = [job.job_id]  # the record's id: provisional, then Slurm's
    try:
        return _supervise(ctx, job, flavor, argv, wait, settings, record)
    finally:
        ctx.store.update(
            lambda s: replace(s, jobs=tuple(j for j in s.jobs if j.job_id != record[0]))
        )


def _child_setup(parent: int) -> None:
    """In srun, before exec: the launcher's signals unblocked, and SIGTERM (a clean cancel) if
    the launcher dies, however it dies."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (*FORWARDED, signal.SIGCHLD))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the launcher died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _supervise(
    ctx: Context,
    job: JobRequest,
    flavor: Flavor,
    argv: list[str],
    wait: bool,
    settings: SlurmSettings,
    record: list[int],
) -> int:
    name = JOB_NAME.format(token=-job.job_id)
    launcher = os.getpid()
    try:
        srun = subprocess.Popen(
            srun_argv(flavor, name, settings, argv, wait),
            preexec_fn=lambda: _child_setup(launcher),
        )
    except OSError as error:
        print(f"moai-tui run: cannot start srun: {error.strerror}", file=sys.stderr)
        return 127
    started = process_started(srun.pid) or time.time()
    _update(ctx, record, pid=srun.pid, submitted=started)
    signalled = 0  # the signal that stopped the job, if one did
    slurm_id = None
    while srun.poll() is None:
        if slurm_id is None:
            found = _lookup(name)
            if found is not None:
                slurm_id, state = found
                _update(ctx, record, job_id=slurm_id)
                if state == "PENDING":
                    print(NO_RESOURCES, file=sys.stderr, flush=True)
        info = signal.sigtimedwait(
            (*FORWARDED, signal.SIGCHLD), LOOKUP_S if slurm_id is None else 1.0
        )
        if info is not None and info.si_signo != signal.SIGCHLD:
            signalled = info.si_signo
            if info.si_code != SI_KERNEL:  # the terminal's own signals reached srun already
                srun.send_signal(info.si_signo)
    if signalled and slurm_id is not None:
        cancel(slurm_id)  # srun gives up its allocation on these signals; make sure of it
    code = srun.returncode
    if signalled and code != 0:
        # srun's own status races between the signal it passed on and its forced end of the
        # step (130 or 137 for one Ctrl-C): the launcher's is the one the user caused.
        return 128 + signalled
    return code if code >= 0 else 128 - code


def _update(ctx: Context, record: list[int], **changes) -> None:
    """Change this job's record, if it is still there (`smi -r` may have taken it away)."""

    def change(state: State) -> State:
        jobs = tuple(replace(j, **changes) if j.job_id == record[0] else j for j in state.jobs)
        return replace(state, jobs=jobs)

    ctx.store.update(change)
    record[0] = changes.get("job_id", record[0])


def _lookup(name: str) -> tuple[int, str] | None:
    """Slurm's id and state of the user's job named `name`, once squeue lists it."""
    try:
        done = subprocess.run(
            ["squeue", "--noheader", "--me", f"--name={name}", "--format=%i %T"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        if job_id.isdigit():
            return int(job_id), state
    return None


def cancel(job_id: int) -> None:
    """`scancel` a job of the user's; one that has already ended is no error."""
    if job_id > 0:
        subprocess.run(["scancel", "--quiet", str(job_id)], capture_output=True, timeout=30)


def release(job: JobRequest) -> None:
    """`smi -r` on a device whose job is a Slurm allocation: cancel it. Its srun then ends and
    its launcher cleans up and passes the exit code on; srun is also told directly, for a job
    Slurm has not named yet."""
    cancel(job.job_id)
    try:
        os.kill(job.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
