"""Backend `nvml`: this machine's NVIDIA GPUs, read through NVML (nvidia-ml-py's `pynvml`).

Collected in tiers, as the calls' real costs demand: handles and static facts once; utilization,
memory, temperature and power each tick (about 14 us per GPU on an H200); the process list on a
slower cadence; PCIe throughput (21 ms a call) never. Any field may be unavailable (NotSupported,
NoPermission, NotFound): it becomes None and the sample goes on. A GPU that falls off the bus is
marked lost and the others carry on.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import pynvml

from moai_tui.backends.local import local_jobs, process_info
from moai_tui.catalog import Catalog, derived_catalog
from moai_tui.errors import BackendError
from moai_tui.model import NVIDIA_DRIVER, ClusterSnapshot, Gpu, Job, JobRequest, Node

MIB = 1024 * 1024
PROCESS_INTERVAL_S = 3.0
# GPU_IS_LOST: the device is gone, stop asking it. UNKNOWN: maybe gone, maybe a hiccup: lost
# only after this many ticks in a row. Anything else: that one value is missing.
UNKNOWN_LIMIT = 3


@dataclass
class _Device:
    index: int
    handle: object
    name: str
    uuid: str
    lost: bool = False
    unknown_streak: int = 0  # ticks in a row whose readings failed with NVML_ERROR_UNKNOWN


def _try(call: Callable, *args):
    """(value, error code): value None when NVML cannot answer this field on this GPU."""
    try:
        return call(*args), None
    except pynvml.NVMLError as error:
        return None, error.value


def describe_nvml_error(error: Exception) -> str:
    if isinstance(error, pynvml.NVMLError_LibraryNotFound):
        return "NVML library not found (no NVIDIA driver installed)"
    if isinstance(error, pynvml.NVMLError_DriverNotLoaded):
        return "NVIDIA driver not loaded"
    return f"NVML failed: {error}"


class NvmlBackend:
    name = "nvml"
    notice: str | None = None
    # This machine's GPUs: `moai-tui run` hands them out.
    visible_devices_env = "CUDA_VISIBLE_DEVICES"
    scheduler = None

    def __init__(
        self, clock: Callable[[], float] = time.time, process_interval: float = PROCESS_INTERVAL_S
    ):
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            raise BackendError(f"nvml backend: {describe_nvml_error(error)}") from None
        self.clock = clock
        self.process_interval = process_interval
        self.host = socket.gethostname()
        self.user = getpass.getuser()
        self.driver = _try(pynvml.nvmlSystemGetDriverVersion)[0] or "-"
        self.devices: list[_Device] = []
        count = _try(pynvml.nvmlDeviceGetCount)[0] or 0
        for index in range(count):
            handle, _ = _try(pynvml.nvmlDeviceGetHandleByIndex, index)
            found = handle is not None
            name = _try(pynvml.nvmlDeviceGetName, handle)[0] if found else None
            uuid = _try(pynvml.nvmlDeviceGetUUID, handle)[0] if found else None
            self.devices.append(_Device(index, handle, name or "NVIDIA GPU", uuid or "", not found))
        if not self.devices:
            pynvml.nvmlShutdown()
            raise BackendError("nvml backend: the NVIDIA driver reports no GPU")
        self._processes: dict[int, list] = {}  # GPU index -> NVML process records
        self._process_info: dict[int, tuple[str, str, int | None]] = {}  # pid -> user, cmd, MiB
        self._processes_at = -float("inf")
        self._process_util: dict[int, float] = {}  # pid -> SM % over the last slow period
        self._util_since: dict[int, int] = {}  # GPU index -> last sample's timestamp (us)

    # Static facts --------------------------------------------------------------------------
    def memory_total_mib(self) -> int | None:
        for device in self.devices:
            info = (
                _try(pynvml.nvmlDeviceGetMemoryInfo, device.handle)[0] if not device.lost else None
            )
            if info is not None:
                return info.total // MIB
        return None

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        pass  # this machine's GPUs are few: always every one

    def local_catalog(self) -> Catalog:
        """1, 2, 4, 8 ... and all of this machine's GPUs, named after the model and memory."""
        return derived_catalog(
            len(self.devices),
            self.memory_total_mib() or 0,
            self.devices[0].name,
            f"(derived from NVML on {self.host})",
        )

    # Per tick ------------------------------------------------------------------------------
    def _read(self, device: _Device, job_id: int | None) -> Gpu:
        if device.lost:
            return Gpu(self.host, device.index, device.name, lost=True, uuid=device.uuid)
        handle = device.handle
        try:  # the common case in one go: four calls, no per-field bookkeeping
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            temp = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
            power = pynvml.nvmlDeviceGetPowerUsage(handle)
        except pynvml.NVMLError:
            util, code_u = _try(pynvml.nvmlDeviceGetUtilizationRates, handle)
            memory, code_m = _try(pynvml.nvmlDeviceGetMemoryInfo, handle)
            temp, code_t = _try(
                pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU
            )
            power, code_p = _try(pynvml.nvmlDeviceGetPowerUsage, handle)
            codes = (code_u, code_m, code_t, code_p)
            unknown = pynvml.NVML_ERROR_UNKNOWN in codes
            device.unknown_streak = device.unknown_streak + 1 if unknown else 0
            if pynvml.NVML_ERROR_GPU_IS_LOST in codes or device.unknown_streak >= UNKNOWN_LIMIT:
                device.lost = True
                return Gpu(self.host, device.index, device.name, lost=True, uuid=device.uuid)
        else:
            device.unknown_streak = 0
        return Gpu(
            node=self.host,
            index=device.index,
            model=device.name,
            util=None if util is None else float(util.gpu),
            mem_util=None if util is None else float(util.memory),
            mem_used_mib=None if memory is None else memory.used // MIB,
            mem_total_mib=None if memory is None else memory.total // MIB,
            temp_c=None if temp is None else float(temp),
            power_w=None if power is None else power / 1000.0,
            job_id=job_id,
            uuid=device.uuid,
        )

    def _refresh_processes(self) -> None:
        """The slow tier: which processes run on each GPU, who they are, what they hold."""
        self._process_util = {}
        for device in self.devices:
            if not device.lost:
                procs = _try(pynvml.nvmlDeviceGetComputeRunningProcesses, device.handle)[0]
                self._processes[device.index] = list(procs or ())
                if procs == []:
                    continue  # nothing runs there: spare an idle machine the call below
                # 2-2.8 ms a call on an H200, NotFound while nothing ran since `since`: slow
                # tier only.
                since = self._util_since.get(device.index, 0)
                samples = _try(pynvml.nvmlDeviceGetProcessUtilization, device.handle, since)[0]
                for sample in samples or ():
                    self._process_util[sample.pid] = max(
                        float(sample.smUtil), self._process_util.get(sample.pid, 0.0)
                    )
                    since = max(since, sample.timeStamp)
                self._util_since[device.index] = since
        self._describe_processes()

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        now = self.clock()
        if now - self._processes_at >= self.process_interval:
            self._processes_at = now
            self._refresh_processes()
        jobs = self._jobs(requests)
        holder = {loc: job.job_id for job in jobs for loc in job.gpus} if jobs else {}
        prefix = f"{self.host}:"
        gpus = tuple(self._read(d, holder.get(prefix + str(d.index))) for d in self.devices)
        return ClusterSnapshot(
            time=now,
            backend=self.name,
            user=self.user,
            nodes=(Node(self.host, gpus),),
            jobs=tuple(jobs),
            platform=NVIDIA_DRIVER,
            version_current=self.driver,
            version_latest="-",  # nothing here knows a newer driver
            host=self.host,
            local=True,
        )

    def _describe_processes(self) -> None:
        """On the slow cadence only: who runs each process and how much GPU memory it holds."""
        memory: dict[int, int | None] = {}
        for procs in self._processes.values():
            for proc in procs:
                used = getattr(proc, "usedGpuMemory", None)
                if isinstance(used, int):
                    memory[proc.pid] = (memory.get(proc.pid) or 0) + used // MIB
                else:
                    memory.setdefault(proc.pid, None)
        self._process_info = process_info(memory, self._process_info)

    def _jobs(self, requests: Sequence[JobRequest]) -> list[Job]:
        pids = {index: [p.pid for p in procs] for index, procs in self._processes.items()}
        return local_jobs(self.host, requests, pids, self._process_info, self._process_util)

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> None:
        return None  # NVML keeps no history: the dashboard gathers its own

    def pinned_state(self) -> None:
        return None

    def replay_status(self) -> None:
        return None  # live

    def close(self) -> None:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
