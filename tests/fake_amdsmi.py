"""A fake libamd_smi under the REAL `amdsmi` Python package, for machines without an AMD GPU.

No AMD GPU is available to this project: this is as close as the tests get. The real PyPI
package (amdsmi 7.0.2, pinned in the test extra) is imported with `ctypes.CDLL` answering
`libamd_smi.so` with this module's FakeLibrary, so everything above the C boundary is AMD's own
code: the ctypes structures, the dicts `amdsmi_interface.py` builds from them (0xFFFF and
UINT_MAX turned into "N/A", hex padding, ...), its status checks and its exception classes.
Below it, each `c_<function>` here fills the structure the C function would, from the GPUs of a
scenario, or returns the amdsmi_status_t a fault asks for.

Where each shape comes from (amdsmi 7.0.2 wheel, amdsmi/amdsmi_wrapper.py for the structures,
amdsmi/amdsmi_interface.py for what Python sees; units from ROCm/amdsmi include/amd_smi/amdsmi.h
and src/amd_smi/amd_smi.cc):
- amdsmi_status_t codes: amdsmi_wrapper.py AMDSMI_STATUS_* (SUCCESS 0, NOT_SUPPORTED 2,
  DRM_ERROR 6, NO_PERM 10, DRIVER_NOT_LOADED 34, ...); a non-zero status raises
  AmdSmiLibraryException(code) in amdsmi_interface._check_res.
- socket and processor handles: amdsmi_interface.amdsmi_get_socket_handles /
  amdsmi_get_processor_handles (count first with a NULL array, then the array of void*).
- struct_amdsmi_asic_info_t (market_name, vendor_id, asic_serial as a hex string, ...),
  struct_amdsmi_board_info_t (model_number, product_name: the FRU's, else the PCI database's
  name, CHANGELOG "product_name to fallback to pciids"), struct_amdsmi_driver_info_t.
- amdsmi_get_gpu_device_uuid: a string buffer; UUIDs as the amd-smi CLI README lists them
  ("7eff74a0-0000-1000-808f-7e20764e2714", amdsmi_cli/README.md).
- struct_amdsmi_enumeration_info_t (hip_id, hsa_id, drm_card, drm_render, hip_uuid; amdsmi 7.0)
  and struct_amdsmi_kfd_info_t (kfd_id, node_id, current_partition_id).
- amdsmi_get_gpu_compute_partition / _memory_partition: strings "SPX".."CPX", "NPS1".. (the
  amd-smi README's PARTITION section: COMPUTE_PARTITION: SPX, MEMORY_PARTITION: NPS1).
- struct_amdsmi_engine_usage_t: gfx_activity, umc_activity, mm_activity in %, 0xFFFF = N/A.
- struct_amdsmi_vram_usage_t: vram_total, vram_used in MiB (amd_smi.cc divides bytes by
  1024 * 1024); an MI250 GCD has 65520 MiB, the MoAI Platform's 64 GB GPU.
- amdsmi_get_temp_metric: int64 degrees Celsius (amd_smi.cc divides millidegrees by 1000);
  EDGE 0, HOTSPOT 1, VRAM 2 (AMDSMI_TEMPERATURE_TYPE_*).
- struct_amdsmi_power_info_t: socket_power (W), current_socket_power (MI300), average_socket_power
  (MI200), 0xFFFF = N/A (amd_smi.cc fills 0xFFFF where gpu_metrics has no value).
- struct_amdsmi_proc_info_t: name, pid, mem (bytes), engine_usage.gfx (ns of GFX time),
  memory_usage.vram_mem (bytes), cu_occupancy; the count in/out as the C function takes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

GIB = 1024**3
SOCKET_BASE = 0x5000
HANDLE_BASE = 0x1000
NA16 = 0xFFFF
UINT32_MAX = 0xFFFFFFFF


@dataclass
class FakeProcess:
    pid: int
    name: str
    vram_bytes: int
    gfx_ns: int = 0


@dataclass
class FakeGpu:
    """One processor as libamd_smi describes it."""

    socket: int
    hip_id: int
    node_id: int
    uuid: str
    market_name: str
    product_name: str
    model_number: str
    vram_total_mib: int
    vram_used_mib: int = 0
    gfx: int = 0
    umc: int = 0
    temps: dict[int, int] = field(default_factory=lambda: {0: 41, 1: 48, 2: 52})
    socket_power: int = 95
    current_power: int = NA16
    average_power: int = 95
    compute_partition: str = "SPX"
    memory_partition: str = "NPS1"
    partition_id: int = 0
    processes: list[FakeProcess] = field(default_factory=list)


def mi250_node() -> list[FakeGpu]:
    """A MoAI node: 4 MI250X OAMs (sockets) of 2 GCDs each, 65520 MiB per GCD. The library lists
    them in PCI order, which here differs from ROCr's (HIP's) order, as it may on a real node."""
    hip_order = [1, 0, 3, 2, 5, 4, 7, 6]
    return [
        FakeGpu(
            socket=gcd // 2,
            hip_id=hip_order[gcd],
            node_id=2 + hip_order[gcd],  # KFD node 0 and 1 are the CPUs
            uuid=f"{0x10 + gcd:02x}ff740c-0000-1000-80{gcd:02x}-7e20764e2714",
            market_name="AMD Instinct MI250X",
            product_name="Aldebaran/MI200 [Instinct MI250X/MI250]",
            model_number="N/A",
            vram_total_mib=65520,
            vram_used_mib=10 + gcd,
            gfx=gcd * 10,
            umc=gcd,
            compute_partition="",  # MI200: partitions are not supported
            memory_partition="",
            partition_id=UINT32_MAX,
        )
        for gcd in range(8)
    ]


def mi300x_cpx() -> list[FakeGpu]:
    """One MI300X in CPX / NPS1 mode: 8 partitions on one socket; board-wide readings (power,
    hotspot and memory temperature) on partition 0 only, the others read 0 or N/A."""
    return [
        FakeGpu(
            socket=0,
            hip_id=p,
            node_id=1 + p,
            uuid=f"{p:02x}ff74a1-0000-1000-80cb-a6eb2a5d2e2b",
            market_name="AMD Instinct MI300X",
            product_name="AMD Instinct MI300X OAM",
            model_number="102-G30211-0C",
            vram_total_mib=24576,
            vram_used_mib=300,
            gfx=20 if p == 0 else NA16,
            umc=5 if p == 0 else NA16,
            temps={1: 55, 2: 50} if p == 0 else {},  # no edge sensor on MI300
            socket_power=NA16,
            current_power=250 if p == 0 else 0,
            average_power=NA16,
            compute_partition="CPX",
            memory_partition="NPS1",
            partition_id=p,
        )
        for p in range(8)
    ]


class FakeFunction:
    """One C function of the library: ctypes attributes accepted, calls go to the scenario."""

    def __init__(self, name: str):
        self.name = name
        self.restype = None
        self.argtypes = None

    def __call__(self, *args):
        return (FakeAmdSmi.current or FakeAmdSmi.machine()).call(self.name, args)


class FakeLibrary:
    def __init__(self):
        self._functions: dict[str, FakeFunction] = {}

    def __getattr__(self, name: str) -> FakeFunction:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._functions.setdefault(name, FakeFunction(name))


@dataclass
class FakeAmdSmi:
    gpus: list[FakeGpu] = field(default_factory=mi250_node)
    init_status: int = 0
    gone: set[int] = field(default_factory=set)  # positions whose every call fails (DRM error)
    # function name -> status it returns for every GPU (e.g. NOT_SUPPORTED, NO_PERM)
    failing: dict[str, int] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)

    current: ClassVar[FakeAmdSmi | None] = None  # the scenario installed now

    @classmethod
    def machine(cls) -> FakeAmdSmi:
        """This machine as it is: no amdgpu driver (what amdsmi_init says without one)."""
        return cls(gpus=[], init_status=34)

    # Installing ----------------------------------------------------------------------------
    def install(self, monkeypatch=None) -> FakeAmdSmi:
        """Make `import amdsmi` load the real package over FakeLibrary, with this scenario
        answering. Tests use the `amd` fixture, which also drops the modules afterwards, so the
        next import meets this machine as it is."""
        real_cdll = ctypes.CDLL

        def cdll(name, *args, **kwargs):
            if str(name).endswith("libamd_smi.so"):
                return FakeLibrary()
            return real_cdll(name, *args, **kwargs)

        forget_amdsmi()
        ctypes.CDLL = cdll
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                importlib.import_module("amdsmi")
        finally:
            ctypes.CDLL = real_cdll
        if monkeypatch is not None:
            monkeypatch.setattr(FakeAmdSmi, "current", self)
        else:
            FakeAmdSmi.current = self
        return self

    # Dispatch ------------------------------------------------------------------------------
    def call(self, name: str, args: tuple) -> int:
        self.calls[name] += 1
        if name in self.failing:
            return self.failing[name]
        method = getattr(self, "c_" + name, None)
        assert method is not None, f"fake libamd_smi: {name} is not faked"
        return method(*args)

    def gpu(self, handle) -> tuple[FakeGpu | None, int]:
        position = (handle.value or 0) - HANDLE_BASE
        if not 0 <= position < len(self.gpus):
            return None, 31  # AMDSMI_STATUS_NOT_FOUND
        if position in self.gone:
            return None, 6  # AMDSMI_STATUS_DRM_ERROR: the device's ioctls fail
        return self.gpus[position], 0

    # The C functions -----------------------------------------------------------------------
    def c_amdsmi_init(self, flags):
        return self.init_status

    def c_amdsmi_shut_down(self):
        return 0

    def c_amdsmi_get_socket_handles(self, count_ref, array):
        sockets = sorted({g.socket for g in self.gpus})
        count = count_ref._obj
        if array:
            for i, sock in enumerate(sockets[: count.value]):
                array[i] = SOCKET_BASE + sock
        count.value = len(sockets)
        return 0

    def c_amdsmi_get_processor_handles(self, socket_handle, count_ref, array):
        sock = socket_handle.value - SOCKET_BASE
        mine = [i for i, g in enumerate(self.gpus) if g.socket == sock]
        count = count_ref._obj
        if array:
            for i, position in enumerate(mine[: count.value]):
                array[i] = HANDLE_BASE + position
        count.value = len(mine)
        return 0

    def _struct(self, handle, ref, fill) -> int:
        gpu, status = self.gpu(handle)
        if gpu is None:
            return status
        fill(gpu, ref._obj)
        return 0

    def c_amdsmi_get_gpu_asic_info(self, handle, ref):
        def fill(gpu, s):
            s.market_name = gpu.market_name.encode()
            s.vendor_id = 0x1002
            s.vendor_name = b"Advanced Micro Devices Inc. [AMD/ATI]"
            s.device_id = 0x740C
            s.asic_serial = b"7E8F7E20764E2714"
            s.num_of_compute_units = 110
            s.target_graphics_version = 0x90A

        return self._struct(handle, ref, fill)

    def c_amdsmi_get_gpu_board_info(self, handle, ref):
        def fill(gpu, s):
            s.model_number = gpu.model_number.encode()
            s.product_name = gpu.product_name.encode()
            s.manufacturer_name = b"Advanced Micro Devices, Inc. [AMD/ATI]"

        return self._struct(handle, ref, fill)

    def c_amdsmi_get_gpu_driver_info(self, handle, ref):
        def fill(gpu, s):
            s.driver_name = b"amdgpu"
            s.driver_version = b"6.10.5"
            s.driver_date = b"2015/01/01 00:00"

        return self._struct(handle, ref, fill)

    def c_amdsmi_get_gpu_device_uuid(self, handle, length_ref, buffer):
        gpu, status = self.gpu(handle)
        if gpu is None:
            return status
        buffer.value = gpu.uuid.encode()
        return 0

    def c_amdsmi_get_gpu_enumeration_info(self, handle, ref):
        def fill(gpu, s):
            s.hip_id = gpu.hip_id
            s.hsa_id = gpu.node_id
            s.drm_card = gpu.hip_id
            s.drm_render = 128 + gpu.hip_id
            s.hip_uuid = f"GPU-{gpu.uuid[-16:]}".encode()

        return self._struct(handle, ref, fill)

    def c_amdsmi_get_gpu_kfd_info(self, handle, ref):
        def fill(gpu, s):
            s.kfd_id = 0x1000 + gpu.node_id
            s.node_id = gpu.node_id
            s.current_partition_id = gpu.partition_id

        return self._struct(handle, ref, fill)

    def _partition(self, handle, buffer, text_of) -> int:
        gpu, status = self.gpu(handle)
        if gpu is None:
            return status
        if not text_of(gpu):
            return 2  # AMDSMI_STATUS_NOT_SUPPORTED: no partitions on this GPU
        buffer.value = text_of(gpu).encode()
        return 0

    def c_amdsmi_get_gpu_compute_partition(self, handle, buffer, length):
        return self._partition(handle, buffer, lambda g: g.compute_partition)

    def c_amdsmi_get_gpu_memory_partition(self, handle, buffer, length):
        return self._partition(handle, buffer, lambda g: g.memory_partition)

    def c_amdsmi_get_gpu_activity(self, handle, ref):
        def fill(gpu, s):
            s.gfx_activity, s.umc_activity, s.mm_activity = gpu.gfx, gpu.umc, NA16

        return self._struct(handle, ref, fill)

    def c_amdsmi_get_gpu_vram_usage(self, handle, ref):
        def fill(gpu, s):
            s.vram_total, s.vram_used = gpu.vram_total_mib, gpu.vram_used_mib

        return self._struct(handle, ref, fill)

    def c_amdsmi_get_temp_metric(self, handle, sensor, metric, ref):
        gpu, status = self.gpu(handle)
        if gpu is None:
            return status
        assert int(metric) == 0  # AMDSMI_TEMP_CURRENT
        if int(sensor) not in gpu.temps:
            return 2  # AMDSMI_STATUS_NOT_SUPPORTED: no such sensor on this processor
        ref._obj.value = gpu.temps[int(sensor)]
        return 0

    def c_amdsmi_get_power_info(self, handle, ref):
        def fill(gpu, s):
            s.socket_power = gpu.socket_power
            s.current_socket_power = gpu.current_power
            s.average_socket_power = gpu.average_power
            s.gfx_voltage = s.soc_voltage = s.mem_voltage = NA16
            s.power_limit = 560

        return self._struct(handle, ref, fill)

    def c_amdsmi_get_gpu_process_list(self, handle, count_ref, array):
        gpu, status = self.gpu(handle)
        if gpu is None:
            return status
        count = count_ref._obj
        for i, process in enumerate(gpu.processes[: count.value]):
            record = array[i]
            record.name = process.name.encode()
            record.pid = process.pid
            record.mem = process.vram_bytes
            record.engine_usage.gfx = process.gfx_ns
            record.memory_usage.vram_mem = process.vram_bytes
            record.cu_occupancy = UINT32_MAX
        count.value = len(gpu.processes)
        return 0


def forget_amdsmi() -> None:
    """Drop the amdsmi modules: the next import loads the package afresh."""
    for name in [n for n in sys.modules if n == "amdsmi" or n.startswith("amdsmi.")]:
        del sys.modules[name]
