"""On PYTHONPATH for the CPU suite's processes on a machine that has an NVIDIA driver (see
tests/conftest.py): NVML there answers as on a machine without one, so `auto` picks the
simulator that the CPU suite's expected outputs come from. tests/gpu checks the real driver."""

try:
    import pynvml
except ImportError:  # an interpreter without moai-tui's dependencies (pip, venv tests)
    pass
else:

    def _no_library(*_args, **_kwargs):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    pynvml.nvmlInit = _no_library
    pynvml.nvmlInitWithFlags = _no_library
