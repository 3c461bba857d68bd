"""Run the real `moai-tui` CLI in this process over the fake libamd_smi (tests/fake_amdsmi.py):
an 8-GCD MI250X node, each GCD busier than the last but GPU 0 (ROCr's numbering).

Usage: python tests/fake_amdsmi_main.py -- moai-tui arguments...
Used by tests that need real launcher processes (moai-tui run) on a machine without an AMD GPU.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_amdsmi import FakeAmdSmi, mi250_node  # noqa: E402

from moai_tui.cli import main  # noqa: E402

if __name__ == "__main__":
    gpus = mi250_node()
    for gpu in gpus:  # ROCr's GPU n runs at 10 * n %: GPUs 0 and 1 are the least loaded
        gpu.gfx = 10 * gpu.hip_id
    FakeAmdSmi(gpus=gpus).install()
    raise SystemExit(main(sys.argv[2:]))
