"""Screens pinned as SVG snapshots: seeded simulator, frozen clock, fixed host name.

Update after an intended change with: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from .helpers import make_app, seed_state, settle

SIZES = [(80, 24), (120, 40), (200, 60)]
FLAVORS = ["Small.64GB", "4xLarge.2048GB", "48xLarge.24576GB"]


def waiting_for_first_sample(app):
    async def run_before(pilot) -> None:
        await settle(pilot, app)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("flavor", FLAVORS)
def test_dashboard(snap_compare, config_dir, flavor, size):
    seed_state(config_dir, flavor)
    app = make_app(config_dir, interval=10.0)  # one sample: the history is the same every run
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
