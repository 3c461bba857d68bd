"""The Backend protocol: every backend answers every capability explicitly, and callers use the
answers (no probing with getattr)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli
from fake_amdsmi import FakeAmdSmi, forget_amdsmi
from fake_nvml import FakeNvml

from moai_tui.backends import Backend
from moai_tui.backends.amd import AmdSmiBackend
from moai_tui.backends.nvml import NvmlBackend
from moai_tui.backends.prometheus import PrometheusBackend
from moai_tui.backends.replay import ReplayBackend
from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.backends.snapshot import Pinned, SnapshotBackend
from moai_tui.catalog import Catalog
from moai_tui.context import Context
from moai_tui.sampling import Sampler

HERE = Path(__file__).parent


def protocol_members() -> set[str]:
    declared = {n for n in vars(Backend) if not n.startswith("_")}
    return declared | set(Backend.__annotations__)


def test_protocol_declares_the_optional_features():
    assert {
        "name",
        "notice",
        "visible_devices_env",
        "scheduler",
        "sample",
        "local_catalog",
        "history",
        "pinned_state",
        "replay_status",
        "close",
    } <= protocol_members()


@pytest.fixture
def backends(config_dir, tmp_path, monkeypatch) -> dict[str, Backend]:
    FakeNvml(gpus=2).install(monkeypatch)
    FakeAmdSmi().install(monkeypatch)
    saved = tmp_path / "saved.json"
    saved.write_text(run_cli("smi", "--json", "--backend", "simulator").stdout)
    yield {
        "simulator": SimulatorBackend(),
        "nvml": NvmlBackend(),
        "amdsmi": AmdSmiBackend(),
        "prometheus": PrometheusBackend.from_config("http://127.0.0.1:9"),
        "replay": ReplayBackend.from_spec(str(FIXTURES / "nvml" / "h200-trace.jsonl")),
        "snapshot": SnapshotBackend(str(saved)),
    }
    forget_amdsmi()


def test_every_backend_answers_every_capability_itself(backends):
    """Declared on each class, not inherited from the protocol's `...` bodies."""
    for name, backend in backends.items():
        own = set().union(*(vars(k) for k in type(backend).__mro__ if k is not object))
        own |= set(vars(backend))
        missing = protocol_members() - own
        assert not missing, f"{name} backend does not declare {sorted(missing)}"


def test_capability_answers(backends):
    answers = {
        name: (
            b.visible_devices_env,
            type(b.local_catalog()).__name__,
            type(b.pinned_state()).__name__,
        )
        for name, b in backends.items()
    }
    assert answers == {
        "simulator": (None, "NoneType", "NoneType"),
        "nvml": ("CUDA_VISIBLE_DEVICES", "Catalog", "NoneType"),
        "amdsmi": ("ROCR_VISIBLE_DEVICES", "Catalog", "NoneType"),
        "prometheus": (None, "NoneType", "NoneType"),
        "replay": (None, "Catalog", "NoneType"),  # the H200 trace: one machine's flavors
        "snapshot": (None, "NoneType", "Pinned"),
    }
    assert isinstance(backends["nvml"].local_catalog(), Catalog)
    statuses = {name: b.replay_status() for name, b in backends.items()}
    assert {name for name, status in statuses.items() if status is None} == {
        "simulator",
        "nvml",
        "amdsmi",
        "prometheus",
    }
    assert statuses["replay"].recorded == "nvml" and statuses["replay"].length_s > 60
    saved = statuses["snapshot"]  # one saved moment: a replay of length 0, never live
    assert (saved.source, saved.recorded, saved.length_s) == ("saved.json", "simulator", 0.0)
    assert isinstance(backends["snapshot"].pinned_state(), Pinned)
    for name in ("simulator", "nvml", "amdsmi", "replay", "snapshot"):
        assert backends[name].history(["x"], 60.0, 1.0) is None


class _Plain:
    """A minimal backend that declares every capability and has nothing else."""

    name = "plain"
    notice = None
    visible_devices_env = None
    scheduler = None

    def __init__(self, inner: Backend):
        self.inner = inner
        self.history_calls = 0

    def sample(self, requests=()):
        return self.inner.sample(requests)

    def local_catalog(self):
        return None

    def history(self, nodes, seconds, step):
        self.history_calls += 1
        return [(10.0, 20.0), (30.0, None)]

    def pinned_state(self):
        return None

    def replay_status(self):
        return None

    def close(self):
        pass


def test_first_sample_takes_history_from_the_protocol_method(config_dir):
    ctx = Context(backend_spec="simulator")
    ctx.backend = _Plain(SimulatorBackend())
    outcome = Sampler(ctx, None).take_first(history_s=60.0, step=1.0)
    assert outcome.sample is not None
    assert outcome.history == ((10.0, 20.0), (30.0, None))
    assert ctx.backend.history_calls == 1


def test_run_refused_on_every_backend_that_cannot_hand_out_gpus(config_dir, tmp_path):
    saved = tmp_path / "saved.json"
    saved.write_text(run_cli("smi", "--json", "--backend", "simulator").stdout)
    trace = FIXTURES / "nvml" / "h200-trace.jsonl"
    for spec in ("simulator", f"replay:{trace}", f"snapshot:{saved}"):
        result = run_cli("run", "--backend", spec, "--", "true")
        assert result.returncode == 1, (spec, result.stderr)
        assert "cannot hand out" in result.stderr and result.stderr.count("\n") == 1


def test_nvml_flavors_come_from_local_catalog(config_dir):
    """Under NVML the catalog is derived from the GPUs (local_catalog), in a real process."""
    result = subprocess.run(
        [sys.executable, str(HERE / "fake_nvml_main.py"), "2", "--", "switch", "-M", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert '"2xH200.280GB"' in result.stdout
    state = json.loads(
        subprocess.run(
            [sys.executable, str(HERE / "fake_nvml_main.py"), "2", "--", "smi", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert state["devices"][0]["flavor"] == "2xH200.280GB"
