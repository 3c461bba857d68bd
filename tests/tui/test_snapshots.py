"""Screens pinned as SVG snapshots: seeded simulator, frozen clock, fixed host name, one sample
applied and laid out before the capture.

Update after an intended change with: pytest tests/tui/test_snapshots.py --snapshot-update,
then look at the pictures (docs/testing.md says how) before committing them.
"""

from __future__ import annotations

import pytest

from .helpers import make_app, seed_state, settle

SIZES = [(80, 24), (120, 40), (200, 60)]
# (scenario id, flavor, a job running, theme, NO_COLOR, simulated nodes)
SCENARIOS = [
    ("idle", "xLarge.512GB", False, None, False, 64),
    ("4xLarge", "4xLarge.2048GB", True, None, False, 64),
    ("48xLarge", "48xLarge.24576GB", True, None, False, 64),
    ("light", "4xLarge.2048GB", True, "moai-light", False, 64),
    ("no-color", "4xLarge.2048GB", True, None, True, 64),
    ("one-machine", "Large.256GB", True, None, False, 1),
]


def waiting_for_first_sample(app):
    async def run_before(pilot) -> None:
        await settle(pilot, app)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s[0])
def test_dashboard(snap_compare, config_dir, monkeypatch, scenario, size):
    _, flavor, running, theme, no_color, nodes = scenario
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    seed_state(config_dir, flavor, running=running)
    # One sample (a 10 s interval): the history is the same every run.
    app = make_app(config_dir, interval=10.0, theme=theme, nodes=nodes)
    assert snap_compare(app, terminal_size=size, run_before=waiting_for_first_sample(app))


@pytest.mark.parametrize("size", SIZES[:2], ids=lambda s: f"{s[0]}x{s[1]}")
def test_flavor_picker(snap_compare, config_dir, size):
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir, interval=10.0)

    async def open_picker(pilot) -> None:
        await settle(pilot, app)
        await pilot.press("f")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=open_picker)
