"""Untrusted text through the dashboard: job commands, user, node and model names from a backend
(other users' command lines, Prometheus labels) are shown as text, never as markup and never as
raw control characters, whatever they hold; the dashboard keeps running."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moai_tui.model import Job, Node
from moai_tui.tui.screens import ConfirmScreen

from .helpers import make_app, screen_settled, seed_state, settle

# What a terminal would act on, were it written raw (C0 but newline, DEL, C1, bidi controls).
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

nasty = st.lists(
    st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
        st.sampled_from(["\x1b", "\x07", "\x9b", "[", "]", "/", "\u202e", "数", "e\u0301"]),
        st.sampled_from(["[/data]", "[b]", "[bold red]", "trainer.devices=[0,1]", "\x1b[2J"]),
    ),
    min_size=1,
    max_size=60,
).map("".join)


class TaintedSimulator:
    """The simulator's cluster with the given text as every job's command and user and as
    two nodes' names and every GPU's model."""

    def __init__(self, inner, command: str, user: str, node: str):
        self.inner, self.command, self.user, self.node = inner, command, user, node

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def sample(self, requests=()):
        snapshot = self.inner.sample(requests)
        renamed = {"node00": f"{self.node}-a", "node01": f"{self.node}-b"}

        def rename(location: str) -> str:
            node, _, index = location.rpartition(":")
            return f"{renamed.get(node, node)}:{index}"

        nodes = tuple(
            Node(
                renamed.get(n.name, n.name),
                tuple(
                    replace(g, node=renamed.get(n.name, n.name), model=self.node) for g in n.gpus
                ),
                n.up,
                n.state,
                n.reason,
            )
            for n in snapshot.nodes
        )
        jobs = tuple(
            Job(
                j.job_id,
                j.pid,
                j.user if j.device is not None else self.user,
                self.command,
                j.device,
                tuple(rename(loc) for loc in j.gpus),
                j.started,
                j.waiting,
                j.mem_used_mib,
                j.util,
            )
            for j in snapshot.jobs
        )
        return replace(snapshot, nodes=nodes, jobs=jobs)


@settings(
    max_examples=int(os.environ.get("MOAI_TUI_DASHBOARD_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=nasty, user=nasty, node=nasty)
def test_untrusted_text_through_the_dashboard(config_dir, command, user, node):
    seed_state(config_dir, "4xLarge.2048GB")
    app = make_app(config_dir, interval=10.0, nodes=8)  # small: an app per example
    app.ctx.backend = app.backend = TaintedSimulator(app.backend, command, user, node)

    async def run() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await settle(pilot, app)
            assert app.is_running and app.error is None, app.error
            shown = _screen(app)
            assert not RAW_CONTROL.search(shown), repr(RAW_CONTROL.search(shown))
            await pilot.press("r")  # the confirmation quotes the (tainted) command
            await screen_settled(pilot, app)
            assert isinstance(app.screen, ConfirmScreen) and app.is_running
            assert not RAW_CONTROL.search(_screen(app))
            await pilot.press("n")

    asyncio.run(run())


def _screen(app) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)
