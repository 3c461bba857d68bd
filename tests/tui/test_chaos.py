"""The dashboard under a misbehaving backend: it keeps running, marks the data, never shows a
traceback, and answers a key press while the backend hangs."""

from __future__ import annotations

import asyncio

import pytest
from chaos import MODES, ChaosBackend
from textual import events

from moai_tui.tui.screens import HelpScreen
from moai_tui.tui.widgets import ClusterGrid, DeviceTable

from .helpers import HANG_BOUND_S, make_app, seed_state, settle

MARKS = {
    "raise": "chaos: backend exploded",
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
        for _ in range(250):
            await pilot.pause(0.02)
            if chaos.samples >= count + 2 or (mode == "hang" and chaos.samples > count):
                break
        shown = app.query_one("#notice")
        for _ in range(250):  # the hang watchdog looks once a second
            if MARKS[mode] is None or MARKS[mode] in str(shown.content):
                break
            await pilot.pause(0.02)
        if MARKS[mode]:
            assert MARKS[mode] in str(shown.content)
        assert app.is_running and app.sample is not None
        if mode in ("nan", "negative", "absurd"):
            # The impossible readings are gone from every cell, not only named in a line.
            util = app.query_one(DeviceTable).row_cells(0)[5]
            assert util == "-", util
            grid = "".join(t for line in app.query_one(ClusterGrid).lines for t, _ in line)
            assert "▪" in grid  # a held GPU whose utilization is unknown
            util_line = app.side.plain.split("\n")[1]
            assert util_line.startswith("util") and util_line.endswith(" -"), util_line
        if mode == "drop_nodes":
            assert len(app.query_one(ClusterGrid).nodes) == 32
        if mode == "duplicate_gpus":
            assert all(len(n.gpus) == 8 for n in app.query_one(ClusterGrid).nodes)
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
        for _ in range(250):
            if "STALE" not in app.header.plain:
                break
            await pilot.pause(0.02)
        assert "STALE" not in app.header.plain
