"""The dashboard under a misbehaving backend: it keeps running, marks the data, never shows a
traceback, and answers a key press while the backend hangs."""

from __future__ import annotations

import asyncio

import pytest
from chaos import MODES, ChaosBackend
from textual import events

from moai_tui.tui.screens import HelpScreen

from .helpers import HANG_BOUND_S, make_app, seed_state, settle

MARKS = {
    "raise": "STALE",
    "hang": "backend not answering",
    "nan": "impossible reading",
    "negative": "impossible reading",
    "absurd": "impossible reading",
    "duplicate_gpus": "duplicated GPU",
    "drop_nodes": None,
}


@pytest.mark.parametrize("mode", MODES)
async def test_dashboard_survives(config_dir, mode):
    seed_state(config_dir, "4xLarge.2048GB")
    app = make_app(config_dir, interval=0.25, hang_after=0.5)
    chaos = app.ctx.backend = app.backend = ChaosBackend(app.backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        chaos.mode = mode
        count = chaos.samples
        for _ in range(100):
            await pilot.pause(0.02)
            if chaos.samples >= count + 2 or (mode == "hang" and chaos.samples > count):
                break
        for _ in range(150):  # the hang watchdog looks once a second
            if MARKS[mode] is None or MARKS[mode] in app.header.content.plain:
                break
            await pilot.pause(0.02)
        header = app.header.content.plain
        if MARKS[mode]:
            assert MARKS[mode] in header, header
        assert app.is_running and app.sample is not None
        # From the key event to the screen it opens: pilot.press would add its own waiting.
        loop = asyncio.get_running_loop()
        started = loop.time()
        app.post_message(events.Key("question_mark", "?"))
        while not isinstance(app.screen, HelpScreen) and loop.time() - started < HANG_BOUND_S:
            await asyncio.sleep(0.001)
        assert isinstance(app.screen, HelpScreen)
        assert loop.time() - started < HANG_BOUND_S
        await pilot.press("escape")
        chaos.mode = None
        chaos.release.set()
        await pilot.pause(0.6)
        assert "STALE" not in app.header.content.plain
