"""A fake NVML for machines without a GPU: the pynvml functions moai-tui calls, answering from
the real H200 / H100 recording in tests/fixtures/nvml (values and errors as recorded), with
faults to inject: a GPU lost mid-run, the driver gone, NoPermission on process lists, and any
NVML error on one field of one GPU (`field_errors`).

`install()` swaps the functions on the real `pynvml` module, so the backend's own calls and its
real error classes are exercised; nothing in the package knows about this file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pynvml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nvml"
GIB = 1024**3
HOLDER_BYTES = 2 * GIB  # the recording's second process: a 2 GiB holder
CODES = {cls.__name__: code for code, cls in pynvml.NVMLError._valClassMapping.items()}


def nvml_error(name: str) -> pynvml.NVMLError:
    return pynvml.NVMLError(CODES[name])


def answer(field_value: dict):
    """The recorded value, or the recorded error raised as NVML raises it."""
    if "error" in field_value:
        raise nvml_error(field_value["error"])
    return field_value["ok"]


@dataclass
class FakeNvml:
    model: str = "h200"
    gpus: int = 1
    frame: int = 120  # alloc30+busy on the H200 recording
    spread: int = 40  # GPU i shows frame + i * spread, so GPUs differ in load
    lost: set[int] = field(default_factory=set)
    # GPU index -> an NVML error every reading of it raises (e.g. "NVMLError_Unknown")
    failing: dict[int, str] = field(default_factory=dict)
    job_pid: int = 439  # the recorded job's pid on GPU 0 (GPU i: + 1000 * i); its holder's + 1
    driver_gone: bool = False
    processes_denied: bool = False
    # (GPU index, call) -> NVML error name raised by that call on that GPU; calls: "util",
    # "mem", "temp", "power", "procs"
    field_errors: dict[tuple[int, str], str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.static = json.loads((FIXTURES / f"{self.model}-static.json").read_text())
        self.trace = [json.loads(line) for line in (FIXTURES / f"{self.model}-trace.jsonl").open()]

    # What NVML would answer ----------------------------------------------------------------
    def line(self, index: int) -> dict:
        return self.trace[(self.frame + index * self.spread) % len(self.trace)]

    def device(self, handle) -> int:
        if handle in self.lost:
            raise nvml_error("NVMLError_GpuIsLost")
        if handle in self.failing:
            raise nvml_error(self.failing[handle])
        return handle

    def functions(self) -> dict:
        static_device = self.static["devices"][0]

        def count(name):
            self.calls[name] = self.calls.get(name, 0) + 1

        def read(name, handle) -> dict:
            """The recorded line for this GPU, after the faults injected on it."""
            count(name)
            line = self.line(self.device(handle))
            if (handle, name) in self.field_errors:
                raise nvml_error(self.field_errors[handle, name])
            return line

        def init():
            count("init")
            if self.driver_gone:
                raise nvml_error("NVMLError_DriverNotLoaded")

        def utilization(handle):
            value = answer(read("util", handle)["util"])
            return SimpleNamespace(gpu=value["gpu"], memory=value["memory"])

        def memory(handle):
            value = answer(read("mem", handle)["mem"])
            return SimpleNamespace(**value)

        def temperature(handle, sensor):
            assert sensor == pynvml.NVML_TEMPERATURE_GPU
            return answer(read("temp", handle)["temp_c"])

        def power(handle):
            return answer(read("power", handle)["power_mW"])

        def processes(handle):
            line = read("procs", handle)
            if self.processes_denied:
                raise nvml_error("NVMLError_NoPermission")
            recorded = answer(line["procs"])
            if not recorded:
                return []
            # The recording stored process objects as repr() strings: rebuild the two it
            # describes (the job, pid from proc_util, and the 2 GiB holder beside it).
            used = line["mem_v2"]["ok"]["used"]
            job = SimpleNamespace(
                pid=self.job_pid + 1000 * handle, usedGpuMemory=max(0, used - HOLDER_BYTES)
            )
            holder = SimpleNamespace(
                pid=self.job_pid + 1 + 1000 * handle, usedGpuMemory=HOLDER_BYTES
            )
            return [job, holder][: len(recorded)]

        def process_utilization(handle, since):
            count("proc_util")
            line = self.line(self.device(handle))
            samples = answer(line["proc_util"])  # NotFound while nothing ran, as recorded
            return [
                SimpleNamespace(
                    pid=s["pid"] - 439 + self.job_pid + 1000 * handle,
                    smUtil=s["smUtil"],
                    memUtil=s["memUtil"],
                    timeStamp=s["timeStamp"],
                )
                for s in samples
                if s["timeStamp"] > since
            ]

        def handle_by_index(index):
            if not 0 <= index < self.gpus:
                raise nvml_error("NVMLError_InvalidArgument")
            return index

        return {
            "nvmlInit": init,
            "nvmlShutdown": lambda: count("shutdown"),
            "nvmlSystemGetDriverVersion": lambda: answer(self.static["driver"]),
            "nvmlDeviceGetCount": lambda: self.gpus,
            "nvmlDeviceGetHandleByIndex": handle_by_index,
            "nvmlDeviceGetName": lambda h: answer(static_device["name"]),
            "nvmlDeviceGetUUID": lambda h: answer(static_device["uuid"])[:-2] + f"{h:02d}",
            "nvmlDeviceGetMemoryInfo": memory,
            "nvmlDeviceGetUtilizationRates": utilization,
            "nvmlDeviceGetTemperature": temperature,
            "nvmlDeviceGetPowerUsage": power,
            "nvmlDeviceGetComputeRunningProcesses": processes,
            "nvmlDeviceGetProcessUtilization": process_utilization,
            "nvmlDeviceGetFanSpeed": lambda h: answer(static_device["fan_speed"]),
        }

    def install(self, monkeypatch=None) -> FakeNvml:
        for name, function in self.functions().items():
            if monkeypatch is not None:
                monkeypatch.setattr(pynvml, name, function)
            else:
                setattr(pynvml, name, function)
        return self
