"""NVML cost of one refresh per GPU against the floor (the four per-tick calls made directly),
and the slowest per-tick sample: run on a GPU machine. Both measured in the same run."""

from __future__ import annotations

import statistics
import time

import pynvml

from benchmarks.common import p95


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


def _instrumented(spent: list[float]) -> dict:
    """Wrap the NVML calls so the time spent inside them during a sample can be summed."""
    originals = {name: getattr(pynvml, name) for name in TICK_CALLS}

    def timed(function):
        def call(*args):
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                spent[0] += time.perf_counter() - start

        return call

    for name, function in originals.items():
        setattr(pynvml, name, timed(function))
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
    spent = [0.0]
    originals = _instrumented(spent)
    inside = []
    for _ in range(rounds):
        spent[0] = 0.0
        backend.sample()
        inside.append(spent[0])
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
    inside_us = statistics.median(inside) / count * 1e6
    return [
        {
            "figure": f"NVML floor per GPU ({count} GPU)",
            "value": f"{floor_us:.1f} us",
            "baseline": "",
            "ratio": "",
            "target": "",
            "ok": None,
        },
        {
            "figure": "NVML time inside calls per refresh per GPU",
            "value": f"{inside_us:.1f} us",
            "baseline": "floor",
            "ratio": f"{inside_us / floor_us:.2f}x",
            "target": "<= 1.5x floor",
            "ok": inside_us / floor_us <= 1.5,
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
            "baseline": "",
            "ratio": "",
            "target": "< 1 ms",
            "ok": p95(tick) < 1e-3,
        },
        {
            "figure": "nvml refresh with process list (slow cadence)",
            "value": f"{statistics.median(process_refresh) * 1e3:.3f} ms",
            "baseline": "",
            "ratio": "",
            "target": "off the tick",
            "ok": None,
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
