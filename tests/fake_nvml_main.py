"""Run the real `moai-tui` CLI in this process with the fake NVML installed.

Usage: python tests/fake_nvml_main.py GPUS -- moai-tui arguments...
Used by tests that need real launcher processes (moai-tui run) on a machine without a GPU.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_nvml import FakeNvml  # noqa: E402

from moai_tui.cli import main  # noqa: E402

if __name__ == "__main__":
    gpus = int(sys.argv[1])
    FakeNvml(gpus=gpus).install()
    raise SystemExit(main(sys.argv[3:]))
