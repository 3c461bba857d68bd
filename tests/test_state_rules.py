"""state.py's rules on the file, at their edges: how many devices, which ids, and a state file
that cannot be read (kills the mutants benchmarks/mutation.py found surviving the switch/device
tests)."""

from __future__ import annotations

import pytest
from conftest import run_cli

from moai_tui.errors import MoaiError
from moai_tui.state import Device, StateStore, parse_state


def state_text(ids: list[int], current: int | None = None) -> str:
    devices = ", ".join(f'{{ id = {i}, flavor = "Small.64GB" }}' for i in ids)
    return (
        f"version = 1\ncurrent = {ids[0] if current is None else current}\ndevices = [{devices}]\n"
    )


def test_one_to_five_devices_with_ids_0_to_4():
    assert [d.id for d in parse_state(state_text([0])).devices] == [0]
    assert [d.id for d in parse_state(state_text([4, 0, 3, 1, 2])).devices] == [4, 0, 3, 1, 2]
    with pytest.raises(
        ValueError, match=r"needs 1 to 5 devices with distinct ids, has \[0, 1, 2, 3, 4, 4\]"
    ):
        parse_state(state_text([0, 1, 2, 3, 4, 4]))
    with pytest.raises(ValueError, match="needs 1 to 5 devices"):
        parse_state(state_text([0, 1, 2, 3, 4, 5]))  # six distinct ids: too many all the same
    with pytest.raises(ValueError, match=r"distinct ids, has \[1, 1\]"):
        parse_state(state_text([1, 1]))
    with pytest.raises(ValueError, match=r"device ids must be 0-4, has \[0, 5\]"):
        parse_state(state_text([0, 5]))
    with pytest.raises(ValueError, match=r"device ids must be 0-4, has \[-1\]"):
        parse_state(state_text([-1]))


def test_a_fresh_user_has_device_0(tmp_path):
    state = StateStore(tmp_path, "Small.64GB").load()
    assert state.devices == (Device(0, "Small.64GB"),) and state.current == 0


def test_unreadable_state_file_is_one_clear_error(config_dir):
    config_dir.mkdir(parents=True)
    (config_dir / "state.toml").mkdir()  # reading it: IsADirectoryError, an OSError
    with pytest.raises(MoaiError, match="state.toml: cannot read it"):
        StateStore(config_dir).load()
    result = run_cli("smi")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "cannot read it" in result.stderr
    (config_dir / "state.toml").rmdir()
    (config_dir / "state.toml").write_bytes(b"version = 1\n\xff\xfe")
    with pytest.raises(MoaiError, match="state.toml: cannot read it"):
        StateStore(config_dir).load()
