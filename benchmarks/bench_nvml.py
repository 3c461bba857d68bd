"""NVML cost of one refresh per GPU against the floor (the four per-tick calls made directly),
and the slowest per-tick sample: run on a GPU machine, all measured in the same run.

The backend makes the floor's own four calls, so timing the time spent inside them against the
floor is about 1.0x by construction; what that instrument can show is how many NVML calls a tick
makes per GPU, and that is what it reports (the floor makes 4)."""

from __future__ import annotations

import statistics
import time

import pynvml

from benchmarks.common import no_baseline, p95, record


def _floor_once(handles) -> float:
    start = time.perf_counter()
    for handle in handles:
        pynvml.nvmlDeviceGetUtilizationRates(handle)
        pynvml.nvmlDeviceGetMemoryInfo(handle)
        pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
        pynvml.nvmlDeviceGetPowerUsage(handle)
    return time.perf_counter() - start


TICK_CALLS = (
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetComputeRunningProcesses",
)


FLOOR_CALLS = 4  # utilization, memory, temperature, power


def _counted(calls: list[int]) -> dict:
    """Wrap the NVML calls so the calls made during a sample can be counted."""
    originals = {name: getattr(pynvml, name) for name in TICK_CALLS}

    def counted(function):
        def call(*args):
            calls[0] += 1
            return function(*args)

        return call

    for name, function in originals.items():
        setattr(pynvml, name, counted(function))
    return originals


def run(rounds: int = 400) -> list[dict]:
    from moai_tui.backends.nvml import NvmlBackend

    backend = NvmlBackend(process_interval=float("inf"))  # the per-tick path alone
    backend.sample()
    backend._processes_at = time.time()
    count = len(backend.devices)
    handles = [d.handle for d in backend.devices]
    floor, tick = [], []
    for _ in range(rounds):  # interleaved, so drift hits both alike
        floor.append(_floor_once(handles))
        start = time.perf_counter()
        backend.sample()
        tick.append(time.perf_counter() - start)
    calls = [0]
    originals = _counted(calls)
    per_tick = []
    for _ in range(rounds):
        calls[0] = 0
        backend.sample()
        per_tick.append(calls[0] / count)
    for name, function in originals.items():
        setattr(pynvml, name, function)
    slow = NvmlBackend(process_interval=0.0)
    process_refresh = []
    for _ in range(20):
        start = time.perf_counter()
        slow.sample()
        process_refresh.append(time.perf_counter() - start)
    floor_us = statistics.median(floor) / count * 1e6
    tick_us = statistics.median(tick) / count * 1e6
    record(
        "nvml",
        {
            "gpus": count,
            "floor_s": floor,
            "tick_s": tick,
            "calls_per_tick_per_gpu": per_tick,
            "process_refresh_s": process_refresh,
        },
    )
    return [
        {
            "figure": f"NVML floor per GPU ({count} GPU)",
            "value": f"{floor_us:.1f} us",
            **no_baseline(),
            "target": "",
            "ok": None,
        },
        {
            "figure": "NVML calls per tick per GPU",
            "value": f"{max(per_tick):g} (most in {rounds} ticks)",
            "baseline": f"floor: {FLOOR_CALLS} calls",
            "ratio": "",
            "target": f"<= {FLOOR_CALLS} calls",
            "ok": max(per_tick) <= FLOOR_CALLS,
        },
        {
            "figure": "nvml backend whole refresh per GPU (with Python)",
            "value": f"{tick_us:.1f} us",
            "baseline": "floor",
            "ratio": f"{tick_us / floor_us:.2f}x",
            "target": "",
            "ok": None,
        },
        {
            "figure": "nvml per-tick sample p95 (whole)",
            "value": f"{p95(tick) * 1e3:.3f} ms",
            **no_baseline(),
            "target": "< 1 ms",
            "ok": p95(tick) < 1e-3,
        },
        {
            "figure": "nvml refresh with process list (slow cadence)",
            "value": f"{statistics.median(process_refresh) * 1e3:.3f} ms",
            **no_baseline(),
            "target": "off the tick",
            "ok": None,
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
