"""Backend `amdsmi`: this machine's AMD GPUs, read through AMD's own Python library `amdsmi`
(`pip install 'moai-tui[amd]'`), which loads ROCm's libamd_smi.

Every processor the library reports is one GPU here: each MI250 GCD, each MI300 partition in CPX
mode. GPUs are numbered as ROCr numbers them (the indices ROCR_VISIBLE_DEVICES takes, the order
rocminfo lists them), so the GPU 3 that `moai-tui run` hands out is device 3 for HIP too.

Collected in tiers, as on NVML: names, ids and partitions once; activity, VRAM, temperatures and
power each tick; the process list on a slower cadence. A field the library cannot read
(NotSupported, NoPermission, its own "N/A") is None and the sample goes on. The library has no
"GPU is lost" status: a GPU whose readings all fail, with errors other than those, for
FAILING_LIMIT ticks in a row is marked lost and no longer asked.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import io
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import ModuleType

from moai_tui.backends.local import local_jobs, process_info
from moai_tui.catalog import Catalog, machine_catalog
from moai_tui.errors import BackendError
from moai_tui.model import AMD_DRIVER, ClusterSnapshot, Gpu, Job, JobRequest, Node

MIB = 1024 * 1024
PROCESS_INTERVAL_S = 3.0
FAILING_LIMIT = 3
# amdsmi_status_t (ROCm's amdsmi.h; the same values in every release): answers that mean "this
# value is not available here", not "this GPU is failing".
STATUS_NOT_SUPPORTED = 2
STATUS_NOT_YET_IMPLEMENTED = 3
STATUS_NO_PERM = 10
STATUS_DRIVER_NOT_LOADED = 34
STATUS_NO_DATA = 40
STATUS_SETTING_UNAVAILABLE = 55
UNAVAILABLE = {
    STATUS_NOT_SUPPORTED,
    STATUS_NOT_YET_IMPLEMENTED,
    STATUS_NO_PERM,
    STATUS_NO_DATA,
    STATUS_SETTING_UNAVAILABLE,
}
MISSING_PACKAGE = (
    "amdsmi backend: the amdsmi package is not installed (pip install 'moai-tui[amd]')"
)
MISSING_ROCM = (
    "amdsmi backend: ROCm's libamd_smi.so not found (install ROCm's amd-smi-lib, "
    "or set ROCM_PATH to the ROCm directory)"
)


def load_amdsmi() -> ModuleType:
    """The `amdsmi` module, or a BackendError saying in one line what is missing.

    Without ROCm, the PyPI package prints two lines on stdout and then fails with KeyError
    while importing (ROCm's own copy fails with OSError): neither reaches the user, whose stdout
    may be `smi --json`."""
    if importlib.util.find_spec("amdsmi") is None:
        raise BackendError(MISSING_PACKAGE)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import amdsmi
    except (KeyError, OSError):
        raise BackendError(MISSING_ROCM) from None
    except Exception as error:  # a broken or mismatched install: say what, in one line
        raise BackendError(
            f"amdsmi backend: the amdsmi package failed to load ({type(error).__name__}: {error})"
        ) from None
    return amdsmi


def _code(error: Exception) -> int | None:
    code = getattr(error, "err_code", None)  # AmdSmiLibraryException's status; None otherwise
    return code if isinstance(code, int) else None


def describe_init_error(error: Exception) -> str:
    code = _code(error)
    if code == STATUS_DRIVER_NOT_LOADED:
        return "the amdgpu driver is not loaded"
    if code == STATUS_NO_PERM:
        return "permission denied opening the GPUs (is this user in the video and render groups?)"
    return f"libamd_smi failed to start ({getattr(error, 'err_info', None) or error})"


def _number(value) -> float | None:
    """A reading as a float; None for the library's "N/A" or anything not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _text(value) -> str:
    return value.strip() if isinstance(value, str) and value.strip() not in ("", "N/A") else ""


@dataclass
class _Device:
    index: int  # ROCr's number for it
    handle: object
    name: str
    uuid: str
    total_mib: int | None
    compute_partition: str
    memory_partition: str
    partition_id: int | None
    lost: bool = False
    failing_streak: int = 0


class AmdSmiBackend:
    name = "amdsmi"
    notice: str | None = None
    # This machine's GPUs: `moai-tui run` hands them out by ROCr index (the launcher also sets
    # HIP_VISIBLE_DEVICES, which numbers what ROCr leaves).
    visible_devices_env = "ROCR_VISIBLE_DEVICES"
    scheduler = None  # `run` starts processes here itself

    def __init__(
        self, clock: Callable[[], float] = time.time, process_interval: float = PROCESS_INTERVAL_S
    ):
        amdsmi = load_amdsmi()
        self.amdsmi = amdsmi
        try:
            amdsmi.amdsmi_init(amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except amdsmi.AmdSmiException as error:
            raise BackendError(f"amdsmi backend: {describe_init_error(error)}") from None
        self.clock = clock
        self.process_interval = process_interval
        self.host = socket.gethostname()
        self.user = getpass.getuser()
        handles = self._try(amdsmi.amdsmi_get_processor_handles)[0] or []
        if not handles:
            self._shut_down()
            raise BackendError("amdsmi backend: ROCm reports no AMD GPU")
        self.devices = self._describe(handles)
        driver = self._try(amdsmi.amdsmi_get_gpu_driver_info, handles[0])[0] or {}
        self.driver = _text(driver.get("driver_version")) or "-"
        self._processes: dict[int, list[dict]] = {}  # GPU index -> the library's process records
        self._process_info: dict[int, tuple[str, str, int | None]] = {}
        self._processes_at = -float("inf")
        self._process_util: dict[int, float] = {}  # pid -> GFX % over the last slow period
        self._gfx_seen: dict[tuple[int, int], tuple[int, float]] = {}  # (gpu, pid) -> ns, time

    def _try(self, call: Callable, *args):
        """(value, status): value None when the library cannot answer this on this GPU."""
        try:
            return call(*args), None
        except self.amdsmi.AmdSmiException as error:
            return None, _code(error)

    # Static facts --------------------------------------------------------------------------
    def _describe(self, handles: list) -> list[_Device]:
        """Each processor's name, ids and partition, once; numbered in ROCr's order."""
        amdsmi = self.amdsmi
        found = []
        for position, handle in enumerate(handles):
            board = self._try(amdsmi.amdsmi_get_gpu_board_info, handle)[0] or {}
            asic = self._try(amdsmi.amdsmi_get_gpu_asic_info, handle)[0] or {}
            name = _product_name(_text(board.get("product_name")), _text(asic.get("market_name")))
            uuid = self._try(amdsmi.amdsmi_get_gpu_device_uuid, handle)[0]
            vram = self._try(amdsmi.amdsmi_get_gpu_vram_usage, handle)[0] or {}
            total = _number(vram.get("vram_total"))
            compute = self._try(amdsmi.amdsmi_get_gpu_compute_partition, handle)[0]
            memory = self._try(amdsmi.amdsmi_get_gpu_memory_partition, handle)[0]
            kfd = self._kfd(handle)
            partition = kfd.get("current_partition_id")
            order = (self._hip_id(handle), kfd.get("node_id"), position)
            device = _Device(
                0,
                handle,
                name or "AMD GPU",
                uuid if isinstance(uuid, str) else "",
                int(total) if total else None,
                _text(compute),
                _text(memory),
                partition
                if isinstance(partition, int) and not isinstance(partition, bool)
                else None,
            )
            found.append((order, device))
        ranks = _rocr_rank([order for order, _ in found])
        for rank, (_, device) in zip(ranks, found, strict=True):
            device.index = rank
        return sorted((device for _, device in found), key=lambda d: d.index)

    def _hip_id(self, handle) -> int | None:
        """HIP's (= ROCr's) index, where this amdsmi has amdsmi_get_gpu_enumeration_info (7.0)."""
        if not hasattr(self.amdsmi, "amdsmi_get_gpu_enumeration_info"):
            return None
        info = self._try(self.amdsmi.amdsmi_get_gpu_enumeration_info, handle)[0] or {}
        value = info.get("hip_id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _kfd(self, handle) -> dict:
        if not hasattr(self.amdsmi, "amdsmi_get_gpu_kfd_info"):  # before ROCm 6.1
            return {}
        return self._try(self.amdsmi.amdsmi_get_gpu_kfd_info, handle)[0] or {}

    def memory_total_mib(self) -> int | None:
        return next((d.total_mib for d in self.devices if d.total_mib), None)

    def set_detail(
        self, nodes: Collection[str] | None, readings: Collection[str] | None = None
    ) -> None:
        pass  # this machine's GPUs are few: always every one

    def local_catalog(self) -> Catalog:
        """1, 2, 4, 8 ... and all of this machine's GPUs; the MoAI names on MI250 GCDs."""
        return machine_catalog(
            len(self.devices),
            self.memory_total_mib() or 0,
            short_model(self.devices[0].name),
            f"(derived from amdsmi on {self.host})",
        )

    # Per tick ------------------------------------------------------------------------------
    def _read(self, device: _Device, job_id: int | None) -> Gpu:
        if device.lost:
            return self._lost(device)
        amdsmi, handle = self.amdsmi, device.handle
        kinds = amdsmi.AmdSmiTemperatureType
        current = amdsmi.AmdSmiTemperatureMetric.CURRENT
        activity, code_a = self._try(amdsmi.amdsmi_get_gpu_activity, handle)
        vram, code_v = self._try(amdsmi.amdsmi_get_gpu_vram_usage, handle)
        hotspot, code_t = self._try(amdsmi.amdsmi_get_temp_metric, handle, kinds.HOTSPOT, current)
        power, code_p = self._try(amdsmi.amdsmi_get_power_info, handle)
        codes = (code_a, code_v, code_t, code_p)
        if all(c is not None for c in codes) and any(c not in UNAVAILABLE for c in codes):
            device.failing_streak += 1
            if device.failing_streak >= FAILING_LIMIT:
                device.lost = True
                return self._lost(device)
        else:
            device.failing_streak = 0
        edge = self._try(amdsmi.amdsmi_get_temp_metric, handle, kinds.EDGE, current)[0]
        memory_temp = self._try(amdsmi.amdsmi_get_temp_metric, handle, kinds.VRAM, current)[0]
        activity, vram = activity or {}, vram or {}
        used, total = _number(vram.get("vram_used")), _number(vram.get("vram_total"))
        return Gpu(
            node=self.host,
            index=device.index,
            model=device.name,
            util=_number(activity.get("gfx_activity")),
            mem_util=_number(activity.get("umc_activity")),
            mem_used_mib=None if used is None else int(used),
            mem_total_mib=int(total) if total else None,
            temp_c=_number(hotspot) if hotspot is not None else _number(edge),
            mem_temp_c=_number(memory_temp),
            power_w=_socket_power(power or {}),
            job_id=job_id,
            uuid=device.uuid,
            edge_temp_c=_number(edge),
            compute_partition=device.compute_partition,
            memory_partition=device.memory_partition,
            partition_id=device.partition_id,
        )

    def _lost(self, device: _Device) -> Gpu:
        return Gpu(
            self.host,
            device.index,
            device.name,
            lost=True,
            uuid=device.uuid,
            compute_partition=device.compute_partition,
            memory_partition=device.memory_partition,
            partition_id=device.partition_id,
        )

    def _refresh_processes(self, now: float) -> None:
        """The slow tier: which processes run on each GPU, the VRAM they hold, their GFX time."""
        util: dict[int, float] = {}
        memory: dict[int, int | None] = {}
        seen: dict[tuple[int, int], tuple[int, float]] = {}
        for device in self.devices:
            if device.lost:
                continue
            found = self._try(self.amdsmi.amdsmi_get_gpu_process_list, device.handle)[0]
            records = [p for p in found or () if isinstance(p, dict) and _pid(p) is not None]
            self._processes[device.index] = records
            for record in records:
                pid = _pid(record)
                mib = _process_vram_mib(record)
                if mib is not None:
                    memory[pid] = (memory.get(pid) or 0) + mib
                else:
                    memory.setdefault(pid, None)
                gfx_ns = (record.get("engine_usage") or {}).get("gfx")
                if isinstance(gfx_ns, int):
                    key = (device.index, pid)
                    seen[key] = (gfx_ns, now)
                    if key in self._gfx_seen:  # busy time over wall time since the last look
                        before_ns, before = self._gfx_seen[key]
                        if now > before and gfx_ns >= before_ns:
                            share = min(100.0, (gfx_ns - before_ns) / ((now - before) * 1e7))
                            util[pid] = max(share, util.get(pid, 0.0))
        self._gfx_seen = seen
        self._process_util = util
        self._process_info = process_info(memory, self._process_info)

    def sample(self, requests: Sequence[JobRequest] = ()) -> ClusterSnapshot:
        now = self.clock()
        if now - self._processes_at >= self.process_interval:
            self._processes_at = now
            self._refresh_processes(now)
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
            platform=AMD_DRIVER,
            version_current=self.driver,
            version_latest="-",  # nothing here knows a newer driver
            host=self.host,
            local=True,
        )

    def _jobs(self, requests: Sequence[JobRequest]) -> list[Job]:
        pids = {index: [_pid(p) for p in records] for index, records in self._processes.items()}
        return local_jobs(self.host, requests, pids, self._process_info, self._process_util)

    def history(self, gpus: Sequence[Gpu], seconds: float, step: float) -> None:
        return None  # the library keeps no history: the dashboard gathers its own

    def pinned_state(self) -> None:
        return None

    def replay_status(self) -> None:
        return None  # live

    def _shut_down(self) -> None:
        with contextlib.suppress(self.amdsmi.AmdSmiException):
            self.amdsmi.amdsmi_shut_down()

    def close(self) -> None:
        self._shut_down()


def _rocr_rank(orders: list[tuple]) -> list[int]:
    """Each processor's place in ROCr's enumeration: HIP's index where the library gives one for
    all of them, else the KFD node id (ROCr enumerates GPU agents in KFD node order), else the
    library's own order."""
    for key in (0, 1):
        values = [order[key] for order in orders]
        numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        if numbers and len(set(values)) == len(values):
            ordered = sorted(values)
            return [ordered.index(v) for v in values]
    return list(range(len(orders)))


def _socket_power(power: dict) -> float | None:
    """Socket power in W: `socket_power` (amdsmi 6.4 on), else the current (MI300) or average
    (MI200) reading; the first the library could read."""
    for key in ("socket_power", "current_socket_power", "average_socket_power"):
        value = _number(power.get(key))
        if value is not None:
            return value
    return None


def _pid(record: dict) -> int | None:
    pid = record.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def _process_vram_mib(record: dict) -> int | None:
    """VRAM a process holds: memory_usage.vram_mem (bytes), else `mem` (bytes)."""
    usage = record.get("memory_usage")
    vram = usage.get("vram_mem") if isinstance(usage, dict) else None
    if not isinstance(vram, int):
        vram = record.get("mem")
    return vram // MIB if isinstance(vram, int) and not isinstance(vram, bool) else None


def _product_name(board: str, market: str) -> str:
    """The board's product name ("AMD Instinct MI300X OAM", the exporter's card_series), unless
    the library fell back to the PCI database's "Codename [Product]" form for want of a FRU:
    then the market name, where there is one."""
    if board and not ("[" in board and market):
        return board
    return market or board


def short_model(name: str) -> str:
    """A product name as a flavor names it: "AMD Instinct MI300X OAM" -> "MI300X-OAM", the
    PCI database's "Aldebaran/MI200 [Instinct MI250X/MI250]" -> "MI250X"."""
    if "[" in name and "]" in name:
        name = name[name.index("[") + 1 : name.index("]")]
    for prefix in ("AMD ", "Instinct "):
        name = name.removeprefix(prefix)
    return name.split("/")[0].strip() or "GPU"
