"""Frozen data shared by every layer: flavors, GPUs, nodes, jobs and one cluster snapshot.

No textual, no I/O: backends produce these, view functions read them.
"""

from __future__ import annotations

from dataclasses import dataclass

MOAI_PLATFORM = "Moreh AI Platform"  # a snapshot's platform when it is a MoAI cluster
NVIDIA_DRIVER = "NVIDIA driver"  # ... when its version is the NVIDIA driver's
AMD_DRIVER = "amdgpu driver"  # ... when its version is AMD's amdgpu driver's


@dataclass(frozen=True)
class Flavor:
    name: str
    gpus: int
    nodes: int
    mib_per_gpu: int

    @property
    def total_mib(self) -> int:
        return self.gpus * self.mib_per_gpu

    @property
    def gpus_per_node(self) -> int:
        return -(-self.gpus // self.nodes)


@dataclass(frozen=True)
class Gpu:
    """One physical GPU. Any reading may be None: the backend could not read it."""

    node: str
    index: int
    model: str = ""
    util: float | None = None
    mem_util: float | None = None
    mem_used_mib: int | None = None
    mem_total_mib: int | None = None
    temp_c: float | None = None
    mem_temp_c: float | None = None
    power_w: float | None = None
    job_id: int | None = None  # who holds it; 0: a job this user may not see (Slurm)
    lost: bool = False
    uuid: str = ""  # the vendor's stable id (NVML UUID, DCGM UUID label), where known
    # Where a GPU reports a second sensor: temp_c is the hottest point (NVIDIA's GPU sensor, AMD's
    # hotspot / junction), edge_temp_c AMD's edge sensor.
    edge_temp_c: float | None = None
    # An AMD GPU split into partitions (MI300X in CPX mode: 8 GPUs): its compute and memory
    # partition modes ("CPX", "NPS1") and this partition's number on its physical GPU (0 is
    # the primary, which alone reports board-wide readings); "" / None where not known.
    compute_partition: str = ""
    memory_partition: str = ""
    partition_id: int | None = None

    @property
    def location(self) -> str:
        return f"{self.node}:{self.index}"


@dataclass(frozen=True)
class NodeSummary:
    """A node described by aggregates only: the backend skipped its per-GPU series (a cluster
    too large to fetch every GPU each refresh; the caller named the nodes it shows one by one).
    Counts are exact; readings are over the GPUs that report them, within validate's bounds;
    memory, temperature and power None where the caller did not ask for them (set_detail)."""

    gpus: int  # GPUs the node reports (lost ones included)
    free: int  # GPUs with no holder that do nothing (view.is_free's rule)
    lost: int
    util: float | None  # mean over its GPUs
    mem_used_mib: int | None
    mem_total_mib: int | None
    temp_c: float | None  # the hottest GPU
    power_w: float | None  # the node's total


# Scheduler states of a node that is up but takes no new work (jobs already there go on).
CLOSED_STATES = frozenset({"drained", "draining", "failing", "maint"})


@dataclass(frozen=True)
class Node:
    name: str
    gpus: tuple[Gpu, ...]
    up: bool = True
    # A scheduler's word for the node (idle, mixed, allocated, down, drained, ...) and why, where
    # a backend knows one; empty otherwise.
    state: str = ""
    reason: str = ""
    # Set, with gpus=(), where the backend fetched only aggregates of the node (see NodeSummary).
    summary: NodeSummary | None = None

    @property
    def gpu_count(self) -> int:
        """The GPUs the node reports, lost ones included, whether listed or summarised."""
        return self.summary.gpus if self.summary is not None else len(self.gpus)

    @property
    def accepts_work(self) -> bool:
        """Whether new work can start here: up, and not drained, draining or in maintenance."""
        return self.up and self.state not in CLOSED_STATES


@dataclass(frozen=True)
class Job:
    """A job on the cluster: the user's own (device set) or another user's."""

    job_id: int
    pid: int
    user: str
    command: str
    device: int | None = None
    gpus: tuple[str, ...] = ()  # locations "node:index"; empty while waiting
    started: float = 0.0
    waiting: bool = False
    mem_used_mib: int | None = None
    util: float | None = None  # the job's own share of its GPUs' time, where known
    # What a job asks for (0: not known) and, while it waits, why (a scheduler's reason).
    gpus_wanted: int = 0
    nodes_wanted: int = 0
    reason: str = ""
    # GPUs held on nodes the backend only summarised (NodeSummary): (node, how many there).
    summarised: tuple[tuple[str, int], ...] = ()

    @property
    def gpu_count(self) -> int:
        return len(self.gpus) + sum(count for _, count in self.summarised)

    @property
    def node_names(self) -> set[str]:
        """The nodes it runs on, listed or summarised."""
        return {loc.rsplit(":", 1)[0] for loc in self.gpus} | {n for n, _ in self.summarised}


@dataclass(frozen=True)
class JobRequest:
    """What the user's state asks of a backend: a job on one of the user's accelerators.

    Simulated jobs (`sim start`) carry no GPUs: the simulator places them. Jobs launched by
    `moai-tui run` carry the GPUs they were given.
    """

    job_id: int
    pid: int
    device: int
    command: str
    gpus: int
    nodes: int
    submitted: float
    user: str
    kind: str = "sim"  # "sim" or "run"
    assigned: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterSnapshot:
    time: float
    backend: str
    user: str
    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...] = ()
    # What version_current is the version of: the MoAI platform, or what a backend read
    # instead ("NVIDIA driver"); version_latest is "-" where nothing measured one.
    platform: str = MOAI_PLATFORM
    version_current: str = "-"
    version_latest: str = "-"
    host: str = ""
    # True where the user's accelerators are views onto the cluster itself (Prometheus): a
    # device then shows its flavor's first nodes whether or not a job of the user's runs.
    attached: bool = False
    # True where the nodes are this machine and job pids are its processes (NVML).
    local: bool = False

    def gpu_map(self) -> dict[str, Gpu]:
        return {gpu.location: gpu for node in self.nodes for gpu in node.gpus}

    def job_on_device(self, device: int) -> Job | None:
        for job in self.jobs:
            if job.user == self.user and job.device == device:
                return job
        return None
