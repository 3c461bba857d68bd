"""What the local backends (nvml, amdsmi) share: the processes a vendor library sees on this
machine's GPUs, described and turned into jobs beside the user's own `moai-tui run` jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from moai_tui.model import Job, JobRequest

# pid -> (user, command line, GPU memory in MiB or None)
ProcessInfo = dict[int, tuple[str, str, int | None]]


def describe_process(pid: int) -> tuple[str, str]:
    """(user, command line) of a local process, '-' where it cannot be read."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.username(), " ".join(process.cmdline()) or process.name()
    except (psutil.Error, OSError):
        return "-", f"pid {pid}"


def process_info(memory: Mapping[int, int | None], known: ProcessInfo) -> ProcessInfo:
    """Who runs each of these pids and what GPU memory it holds; users and command lines are
    read once per pid (`known` carries them from the last slow tick)."""
    out: ProcessInfo = {}
    for pid, mib in memory.items():
        user, command, _ = known.get(pid) or (*describe_process(pid), None)
        out[pid] = (user, command, mib)
    return out


def local_jobs(
    host: str,
    requests: Sequence[JobRequest],
    pids_by_gpu: Mapping[int, Sequence[int]],
    info: ProcessInfo,
    util: Mapping[int, float],
) -> list[Job]:
    """The user's `moai-tui run` jobs, then any other process the library sees on a GPU."""
    jobs = []
    ours = set()
    for request in requests:
        if request.kind != "run":
            continue
        ours.add(request.pid)
        jobs.append(
            Job(
                request.job_id,
                request.pid,
                request.user,
                request.command,
                request.device,
                request.assigned,
                request.submitted,
                mem_used_mib=info.get(request.pid, (None, None, None))[2],
                util=util.get(request.pid),
            )
        )
    others: dict[int, list[str]] = {}
    for index, pids in sorted(pids_by_gpu.items()):
        for pid in pids:
            if pid not in ours:
                others.setdefault(pid, []).append(f"{host}:{index}")
    for pid, locations in sorted(others.items()):
        user, command, memory = info.get(pid, ("-", f"pid {pid}", None))
        jobs.append(
            Job(
                pid,
                pid,
                user,
                command,
                None,
                tuple(locations),
                mem_used_mib=memory,
                util=util.get(pid),
            )
        )
    return jobs
