"""A simulated MoAI cluster: nodes of 8 GPUs shared by several users.

Everything is a pure function of (seed, time, the user's job requests): two processes looking at
the same second see the same numbers, and tests drive the clock. Other users' load is modelled
per node in periods of 15-60 minutes, each period either idle or running one job on some of the
node's GPUs, so any moment is computed without replaying history. A job of the user's is placed
on the nodes that become free first from its submission on (new background work stays off them,
as a scheduler's reservation would), and waits until the last of them drains.
"""

from __future__ import annotations

import getpass
import math
import os
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from moai_tui.errors import UsageError
from moai_tui.model import ClusterSnapshot, Gpu, Job, JobRequest, Node

MASK64 = (1 << 64) - 1
GPUS_PER_NODE = 8
MIB_PER_GPU = 65520
SIM_TIME_ENV = "MOAI_TUI_SIM_TIME"
OTHER_USERS = ("kim", "lee", "park", "choi", "jung", "kang", "cho", "yoon", "jang", "lim")
OTHER_COMMANDS = (
    "python train.py --config llama3-8b.yaml",
    "torchrun pretrain_gpt.py --tp 8",
    "python finetune.py --model qwen2-7b",
    "python eval_harness.py --tasks mmlu",
    "deepspeed train_bert.py",
    "python generate.py --batch 64",
)
BACKGROUND_SIZES = (8, 8, 8, 8, 4, 4, 2, 1)
# One MI250 GCD is half of a 500-560 W package: about 45 W idle, 235 W flat out.
IDLE_POWER_W = 45.0
POWER_PER_UTIL_W = 1.9


def _mix(*parts: int) -> int:
    """splitmix64 folded over the parts: a cheap, stable hash (Python's hash() is salted)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (part & MASK64)) * 0xBF58476D1CE4E5B9 & MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & MASK64
        h ^= h >> 31
    return h


def _unit(*parts: int) -> float:
    return _mix(*parts) / 2.0**64


@lru_cache(maxsize=4096)
def _job_shape(job_id: int) -> tuple[float, float, float]:
    """(evaluation period s, memory target MiB per GPU, memory ramp s) of a job."""
    return (
        240.0 + 180.0 * _unit(job_id, 11),
        (0.55 + 0.35 * _unit(job_id, 12)) * MIB_PER_GPU,
        45.0 + 45.0 * _unit(job_id, 13),
    )


@lru_cache(maxsize=8192)
def _warmth(seed: int, node_no: int, index: int) -> float:
    return 6.0 * _unit(seed, node_no, index, 5)  # airflow differs by slot


@lru_cache(maxsize=8192)
def _idle_gpu(seed: int, node: str, node_no: int, index: int) -> Gpu:
    temp = 31.0 + _warmth(seed, node_no, index)
    return Gpu(
        node,
        index,
        "MI250 GCD",
        0.0,
        0.0,
        0,
        MIB_PER_GPU,
        round(temp, 1),
        round(temp + 6.0, 1),
        IDLE_POWER_W,
    )


@dataclass(frozen=True)
class _Work:
    """A job as the simulator runs it: from `start` to `end` on `gpus` GPUs of a node."""

    job_id: int
    pid: int
    user: str
    command: str
    start: float
    end: float
    gpus: int


LATEST_TIME = 253402300799.0  # 9999-12-31: any later clock is a typo, not a time


def sim_clock() -> float:
    """Wall time, or the frozen time in MOAI_TUI_SIM_TIME (tests, reproducible screenshots).
    Raises UsageError naming the variable when it is not a time."""
    frozen = os.environ.get(SIM_TIME_ENV)
    if not frozen:
        return time.time()
    try:
        value = float(frozen)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= LATEST_TIME:  # NaN fails this too
        raise UsageError(
            f"{SIM_TIME_ENV}={frozen!r} must be a Unix time in seconds "
            f"(e.g. 1780000000); unset it for the real clock"
        )
    return value


class SimulatorBackend:
    name = "simulator"
    visible_devices_env = None  # simulated GPUs: `moai-tui sim start` places jobs instead
    scheduler = None

    def __init__(
        self,
        seed: int = 0,
        nodes: int = 64,
        load: float = 0.7,
        version_current: str = "24.5.0",
        version_latest: str = "24.5.0",
        clock: Callable[[], float] = sim_clock,
        user: str | None = None,
    ):
        self.seed = seed
        self.node_names = tuple(f"node{n:02d}" for n in range(nodes))
        self.load = load
        self.version_current = version_current
        self.version_latest = version_latest
        if clock is sim_clock:
            clock()  # a bad MOAI_TUI_SIM_TIME is reported when the backend opens
        self.clock = clock
        self.user = user or getpass.getuser()
        self.host = socket.gethostname()
        self.notice: str | None = None
        self._placements: dict[tuple, dict] = {}

    # Other users' load -------------------------------------------------------------------
    def _period(self, node: int, t: float) -> tuple[float, float, int]:
        """(start, length, number) of the load period of `node` containing t."""
        length = 900.0 + 2700.0 * _unit(self.seed, node, 1)
        offset = length * _unit(self.seed, node, 2)
        number = math.floor((t + offset) / length)
        return number * length - offset, length, number

    def _background(self, node: int, t: float) -> _Work | None:
        start, length, number = self._period(node, t)
        if _unit(self.seed, node, number, 3) >= self.load:
            return None
        begin = start + 0.15 * length * _unit(self.seed, node, number, 4)
        if t < begin:
            return None
        key = _mix(self.seed, node, number)
        return _Work(
            job_id=100000 + key % 900000,
            pid=1000 + key % 4000000,
            user=OTHER_USERS[key % len(OTHER_USERS)],
            command=OTHER_COMMANDS[(key >> 8) % len(OTHER_COMMANDS)],
            start=begin,
            end=start + length,
            gpus=BACKGROUND_SIZES[(key >> 16) % len(BACKGROUND_SIZES)],
        )

    def _free_from(self, node: int, t: float, needed: int) -> float:
        """When `needed` GPUs at the top of `node` are free, counting from t."""
        work = self._background(node, t)
        if work is None or work.gpus <= GPUS_PER_NODE - needed:
            return t
        return work.end

    # The user's jobs ---------------------------------------------------------------------
    def _place(self, requests: Sequence[JobRequest]) -> dict[int, tuple[float, tuple[int, ...]]]:
        """job_id -> (start time, node numbers) for the user's simulated jobs, oldest first.

        A function of the requests alone (not of the time): computed once per set of jobs."""
        key = tuple(requests)
        if key not in self._placements:
            if len(self._placements) > 64:
                self._placements.clear()
            self._placements[key] = self._compute_placement(requests)
        return self._placements[key]

    def _compute_placement(self, requests: Sequence[JobRequest]) -> dict:
        placed: dict[int, tuple[float, tuple[int, ...]]] = {}
        taken: set[int] = set()
        for request in requests:
            per_node = -(-request.gpus // request.nodes)
            candidates = [n for n in range(len(self.node_names)) if n not in taken]
            if len(candidates) < request.nodes or per_node > GPUS_PER_NODE:
                placed[request.job_id] = (math.inf, ())
                continue
            ready = sorted((self._free_from(n, request.submitted, per_node), n) for n in candidates)
            chosen = ready[: request.nodes]
            taken.update(n for _, n in chosen)
            placed[request.job_id] = (max(t for t, _ in chosen), tuple(n for _, n in chosen))
        return placed

    # Readings ----------------------------------------------------------------------------
    # Costs matter here (a 64-node cluster is 512 GPUs a second): factors that never change are
    # computed once, each busy GPU takes one hash a second split into several uniforms, and an
    # idle GPU is the same object every tick.
    def _utilization(self, job_id: int, gpu: int, age: float, second: int) -> float:
        if age < 0:
            return 0.0
        noise = _mix(job_id, gpu, second)
        wobble = (noise & 0xFFFF) / 65536.0
        if age < 30:  # loading data and compiling: load climbs
            return 3.0 * age * (0.8 + 0.2 * wobble)
        eval_every = _job_shape(job_id)[0]
        if age % (eval_every * 4) < 40:  # checkpoint: the GPUs wait on storage
            return 5.0 * wobble
        if age % eval_every < 20:  # evaluation: small batches
            return 20.0 + 15.0 * wobble
        return 91.0 + 9.0 * wobble

    def _memory(self, job_id: int, age: float) -> int:
        """Ramps up while the job loads, then holds: allocators keep what they took."""
        if age < 0:
            return 0
        _, target, ramp = _job_shape(job_id)
        return min(MIB_PER_GPU, int(target * min(1.0, age / ramp)))

    def _gpu(self, node: str, node_no: int, index: int, work: _Work | None, t: float) -> Gpu:
        if work is None:
            return _idle_gpu(self.seed, node, node_no, index)
        second = math.floor(t)
        age = t - work.start
        util = self._utilization(work.job_id, index, age, second)
        lagged = self._utilization(work.job_id, index, age - 15, second - 15)
        temp = 31.0 + _warmth(self.seed, node_no, index) + 0.55 * (0.6 * lagged + 0.4 * util)
        temp += (_mix(self.seed, node_no, index, second) & 0xFF) / 256.0
        return Gpu(
            node=node,
            index=index,
            model="MI250 GCD",
            util=round(util, 1),
            mem_util=round(util * 0.62, 1),
            mem_used_mib=self._memory(work.job_id, age),
            mem_total_mib=MIB_PER_GPU,
            temp_c=round(temp, 1),
            mem_temp_c=round(temp + 6.0, 1),
            power_w=round(IDLE_POWER_W + POWER_PER_UTIL_W * util, 1),
            job_id=work.job_id,
        )

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        t = self.clock()
        mine = sorted(
            (r for r in requests if r.kind == "sim"), key=lambda r: (r.submitted, r.job_id)
        )
        placed = self._place(mine)
        owner: dict[tuple[int, int], _Work] = {}
        reservations: dict[int, tuple[float, int]] = {}  # node -> (since, GPUs kept free at top)
        jobs: list[Job] = []
        for request in mine:
            start, nodes = placed[request.job_id]
            per_node = -(-request.gpus // request.nodes)
            work = _Work(
                request.job_id,
                request.pid,
                request.user,
                request.command,
                start,
                math.inf,
                request.gpus,
            )
            locations: list[str] = []
            remaining = request.gpus
            for n in nodes:
                take = min(remaining, per_node)
                reservations[n] = (request.submitted, take)
                for index in range(GPUS_PER_NODE - take, GPUS_PER_NODE):
                    if t >= start:
                        owner[(n, index)] = work
                        locations.append(f"{self.node_names[n]}:{index}")
                remaining -= take
            jobs.append(
                Job(
                    request.job_id,
                    request.pid,
                    request.user,
                    request.command,
                    request.device,
                    tuple(locations),
                    start,
                    t < start,
                    gpus_wanted=request.gpus,
                    nodes_wanted=request.nodes,
                )
            )
        nodes_out: list[Node] = []
        for n, name in enumerate(self.node_names):
            work = self._background(n, t)
            if work is not None and n in reservations:
                since, kept = reservations[n]
                # Work that fits beside the reservation runs; colliding work runs only if it
                # was already running when the reservation was made (the node drains).
                if work.gpus > GPUS_PER_NODE - kept and work.start >= since:
                    work = None
            gpus = []
            for index in range(GPUS_PER_NODE):
                holder = owner.get((n, index))
                if holder is None and work is not None and index < work.gpus:
                    holder = work
                gpus.append(self._gpu(name, n, index, holder, t))
            if work is not None:
                jobs.append(
                    Job(
                        work.job_id,
                        work.pid,
                        work.user,
                        work.command,
                        None,
                        tuple(f"{name}:{i}" for i in range(work.gpus)),
                        work.start,
                    )
                )
            nodes_out.append(Node(name, tuple(gpus)))
        return ClusterSnapshot(
            time=t,
            backend=self.name,
            user=self.user,
            nodes=tuple(nodes_out),
            jobs=tuple(self._with_usage(jobs, nodes_out)),
            version_current=self.version_current,
            version_latest=self.version_latest,
            host=self.host,
        )

    @staticmethod
    def _with_usage(jobs: list[Job], nodes: list[Node]) -> list[Job]:
        """A job's memory is what its GPUs hold, its utilization their mean: the simulator runs
        one job per GPU."""
        gpu_by_location = {g.location: g for node in nodes for g in node.gpus}
        out = []
        for job in jobs:
            if not job.gpus:
                out.append(job)
                continue
            held = [gpu_by_location[loc] for loc in job.gpus]
            out.append(
                replace(
                    job,
                    mem_used_mib=sum(g.mem_used_mib or 0 for g in held),
                    util=round(sum(g.util or 0.0 for g in held) / len(held), 1),
                )
            )
        return out

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        pass  # the simulated cluster costs nothing to sample in full

    def local_catalog(self) -> None:
        return None  # the MoAI catalog: the simulated cluster is a MoAI one

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> None:
        return None

    def pinned_state(self) -> None:
        return None

    def replay_status(self) -> None:
        return None  # live

    def close(self) -> None:
        pass
