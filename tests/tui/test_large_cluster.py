"""A cluster too large to fetch GPU by GPU each refresh (Prometheus at scale): the dashboard asks
for the GPUs of the nodes on screen only, the rest comes as per-node summaries, and what it
shows adds up to what the whole cluster read GPU by GPU would show."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import as_summary

from moai_tui.context import Context
from moai_tui.overview import summarise
from moai_tui.pipeline import take_sample
from moai_tui.tui.app import MoaiApp
from moai_tui.tui.widgets import ClusterGrid, fmt_pct
from moai_tui.view import DETAIL_GPUS, has_readings, node_memory

from .helpers import T0, CountingSimulator, seed_state, settle

NODES = 300  # 2,400 GPUs: at 140x40 the grid shows a part of them and scrolls


class SummarisingSimulator(CountingSimulator):
    """The simulator as a large cluster's backend answers: the nodes outside the detail it was
    given as summaries (no GPUs), with memory, temperature and power only where it was asked
    for them; every node in full until it is given a detail."""

    def __init__(self, t: float, **kwargs):
        super().__init__(t, **kwargs)
        self.detail: frozenset[str] | None = None
        self.readings: frozenset[str] | None = None

    def set_detail(self, nodes, readings=None) -> None:
        self.detail = None if nodes is None else frozenset(nodes)
        self.readings = None if readings is None else frozenset(readings)

    def sample(self, requests=()):
        snapshot = super().sample(requests)
        if self.detail is None:
            return snapshot
        return replace(snapshot, nodes=tuple(self._summarised(n) for n in snapshot.nodes))

    def _summarised(self, node):
        if node.name in self.detail:
            return node
        node = as_summary(node)
        if self.readings is None or node.name in self.readings:
            return node
        counts = replace(node.summary, mem_used_mib=None, mem_total_mib=None, temp_c=None)
        return replace(node, summary=replace(counts, power_w=None))


def large_app(config_dir, nodes: int = NODES) -> MoaiApp:
    ctx = Context(backend_spec="simulator")
    ctx.backend = SummarisingSimulator(T0, nodes=nodes)
    ctx.set_detail(())  # as run_dashboard starts: summaries until the grid names its nodes
    return MoaiApp(ctx, 1.0)


async def detailed(pilot, app, names) -> None:
    """Wait until every node named has come GPU by GPU; fail if one never does."""
    for _ in range(500):
        nodes = {n.name: n for n in app.query_one(ClusterGrid).nodes}
        if all(nodes[name].summary is None for name in names):
            return
        await pilot.pause(0.02)
    raise AssertionError(f"still summarised: {sorted(names)}")


def truth(app: MoaiApp):
    """The same moment read GPU by GPU everywhere."""
    ctx = Context(backend_spec="simulator")
    ctx.backend = CountingSimulator(T0, nodes=NODES)
    return take_sample(ctx)


def on_screen(grid: ClusterGrid) -> set[str]:
    """The nodes in the grid's rows on screen (a row of nodes each: its nodes or dense mode)."""
    assert grid.mode in ("nodes", "dense"), grid.mode
    rows = range(grid.top, grid.top + min(grid.rows_needed, grid.budget))
    return {n.name for n, row in zip(grid.nodes, grid.node_rows, strict=True) if row in rows}


async def test_a_screen_of_up_to_detail_gpus_gets_them_all_gpu_by_gpu(config_dir):
    app = large_app(config_dir, nodes=DETAIL_GPUS // 8)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app, samples=2)
        grid = app.query_one(ClusterGrid)
        assert grid.rows_needed <= grid.budget  # every node on screen
        everyone = {n.name for n in grid.nodes}
        assert len(everyone) == DETAIL_GPUS // 8 and grid.shown == everyone
        await detailed(pilot, app, everyone)
        assert app.backend.detail == everyone


async def test_a_screen_of_many_nodes_gets_the_cursor_node_gpu_by_gpu(config_dir):
    """More than DETAIL_GPUS GPUs on screen: the others are drawn from their summaries, so a
    refresh grows with the nodes, not the GPUs."""
    seed_state(config_dir, "4xLarge.2048GB")
    app = large_app(config_dir)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot, app, samples=2)
        grid = app.query_one(ClusterGrid)
        shown = on_screen(grid)
        assert sum(n.gpu_count for n in grid.nodes if n.name in shown) > DETAIL_GPUS
        assert grid.shown == {grid.current_node()}
        await detailed(pilot, app, grid.shown)
        mine = {location.rsplit(":", 1)[0] for location in app.frame.mine}
        assert len(mine) == 4
        listed = {n.name for n in grid.nodes if n.summary is None}
        assert listed == grid.shown | mine == app.backend.detail

        # The cluster line adds up to the cluster read GPU by GPU.
        whole = truth(app)
        expected = summarise(whole.snapshot, whole.views, app.ctx.catalog.flavors)
        got = app.frame.summary
        assert got.mean_util == pytest.approx(expected.mean_util)
        assert replace(got, mean_util=None) == replace(expected, mean_util=None)

        # A node off screen is drawn from its counts: its free and lost GPUs, one cell each.
        off = next(n for n in grid.nodes if n.summary is not None and n.summary.free)
        cells = [text for text, _ in grid._cells(off)]
        same = next(n for n in whole.snapshot.nodes if n.name == off.name)
        assert len(cells) == len(same.gpus)
        drawn_free = [grid._cell(g, same)[0] for g in same.gpus].count("·")
        assert cells.count("·") == off.summary.free == drawn_free

        # Scrolled to the end: the last nodes come GPU by GPU, the first ones are let go.
        app.set_focus(grid)
        await pilot.press("end")
        last = grid.nodes[-1].name
        assert last in grid.shown
        await detailed(pilot, app, {last})
        assert grid.mode == "dense"  # each row named by its first node, the cursor's too
        row_start = grid.nodes[(len(grid.nodes) - 1) // grid.columns * grid.columns].name
        assert "".join(text for text, _ in grid.lines[-1]).startswith(row_start)
        first = next(n.name for n in grid.nodes if n.name not in mine)
        assert last in app.backend.detail and first not in app.backend.detail

        # Cells show no node's memory or temperature: none is asked for but the cursor's (its
        # panel's). Sorted by memory, every node's is, and the grid is ordered by it.
        assert grid.readings == {last} == app.backend.readings
        assert not any(has_readings(n.summary) for n in grid.nodes if n.summary is not None)
        await pilot.press("s", "s")  # name -> util -> memory
        assert grid.sort == "memory" and grid.readings is None
        await until(pilot, lambda: every_summary_has_readings(grid), "summaries lack readings")
        steps = [round((node_memory(n) or -5) / 5) for n in grid.nodes]  # as sort_nodes does
        assert steps == sorted(steps, reverse=True)


async def test_a_screen_of_node_figures_gets_those_nodes_readings(config_dir):
    """70 nodes (560 GPUs) side by side with their figures at 200x60: more than DETAIL_GPUS on
    screen, so they come as summaries, each with the memory and temperature drawn beside it."""
    app = large_app(config_dir, nodes=70)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app, samples=2)
        grid = app.query_one(ClusterGrid)
        assert grid.mode == "stats" and grid.rows_needed <= grid.budget
        everyone = {n.name for n in grid.nodes}
        assert grid.shown == {grid.current_node()} and grid.readings == everyone
        # The first sample brought every node's readings; the backend is now asked for these.
        await until(pilot, lambda: app.backend.readings == everyone, "readings never asked")
        await until(pilot, lambda: every_summary_has_readings(grid), "summaries lack readings")
        busy = next(n for n in grid.nodes if n.summary is not None and node_memory(n))
        figures = "".join(text for text, _ in grid._node_figures(busy))
        assert f"mem {fmt_pct(node_memory(busy)):>4}" in figures and "°C" in figures


def every_summary_has_readings(grid: ClusterGrid) -> bool:
    return all(has_readings(n.summary) for n in grid.nodes if n.summary is not None)


async def until(pilot, condition, failure: str) -> None:
    """Wait until `condition()` holds (the poller runs in a thread); fail saying `failure`."""
    for _ in range(500):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(failure)
