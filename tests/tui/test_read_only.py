"""--read-only (`moai-tui --read-only`, `moai-tui serve --read-only`): everything shown, nothing
changed. The keys, the footer, the command palette and the help lose flavor switching, device
choice and job stopping, and the state file is never written (not even the theme)."""

from __future__ import annotations

import pytest

from moai_tui.state import StateStore
from moai_tui.tui.screens import ConfirmScreen, FlavorPicker, HelpScreen
from moai_tui.tui.widgets import DeviceTable

from .helpers import make_app, seed_state, settle

WRITES = ("Flavor picker (f)", "Use device (d)", "Stop job (r)")


def palette_titles(app) -> list[str]:
    return [command.title for command in app.get_system_commands(app.screen)]


@pytest.mark.parametrize("read_only", [False, True])
async def test_read_only_hides_and_refuses_every_write(config_dir, read_only):
    seed_state(config_dir, "xLarge.512GB", devices=2)
    before = (config_dir / "state.toml").read_bytes()
    app = make_app(config_dir)
    app.read_only = read_only
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        footer = {
            active.binding.action
            for active in app.screen.active_bindings.values()
            if active.binding.show
        }
        titles = palette_titles(app)
        shown = {b.action for b in app.BINDINGS if b.show} & app.WRITE_ACTIONS
        if not read_only:  # the same checks see them when they are there
            assert shown and shown <= footer
            assert all(title in titles for title in WRITES)
            return
        assert not footer & app.WRITE_ACTIONS
        assert not set(WRITES) & set(titles) and "Pause / resume (p)" in titles
        await pilot.press("f")
        await pilot.press("r")
        app.query_one(DeviceTable).focus()
        await pilot.press("down", "d", "enter", "t")
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)  # the keys before it were handled: none opened
        help_text = str(app.screen.query_one("#help").content)
        assert "flavor picker" not in help_text and "stop a job" not in help_text
        assert "pause" in help_text
        await pilot.press("escape")
        assert not isinstance(app.screen, (FlavorPicker, ConfirmScreen))
        await settle(pilot, app, app.backend.samples + 1)
    assert (config_dir / "state.toml").read_bytes() == before
    assert StateStore(config_dir).load().current == 0
