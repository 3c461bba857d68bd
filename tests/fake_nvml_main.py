"""Run the real `moai-tui` CLI in this process with the fake NVML installed.

Usage: python tests/fake_nvml_main.py GPUS -- moai-tui arguments...
Used by tests that need real launcher processes (moai-tui run) on a machine without a GPU.

Faults a test can ask for through the environment (never read by the package itself):
- FAKE_SEEDED_RANDOM=1: every SystemRandom is random.Random(1), so two launchers draw the same
  job ids, the worst case of a collision;
- FAKE_SPAWN_DELAY=S: starting a child takes S seconds (a slow fork on a loaded machine);
- FAKE_AFTER_SPAWN=PATH: once the child is started, write its pid to PATH and pause 3 s there,
  so a test can signal the launcher at exactly that moment.
"""

import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_nvml import FakeNvml  # noqa: E402

from moai_tui.cli import main  # noqa: E402


class _FaultyPopen(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        time.sleep(float(os.environ.get("FAKE_SPAWN_DELAY", "0")))
        super().__init__(*args, **kwargs)
        marker = os.environ.get("FAKE_AFTER_SPAWN")
        if marker:
            Path(marker).write_text(str(self.pid))
            time.sleep(3.0)


if __name__ == "__main__":
    gpus = int(sys.argv[1])
    FakeNvml(gpus=gpus).install()
    if os.environ.get("FAKE_SEEDED_RANDOM"):
        random.SystemRandom = lambda: random.Random(1)
    subprocess.Popen = _FaultyPopen
    raise SystemExit(main(sys.argv[3:]))
