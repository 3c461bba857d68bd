"""Building a dashboard on a seeded simulator with a frozen clock, for pilot and snapshot tests."""

from __future__ import annotations

import threading
from pathlib import Path

from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.catalog import load_catalog
from moai_tui.context import Context
from moai_tui.model import JobRequest
from moai_tui.state import Device, State, StateStore
from moai_tui.tui.app import MoaiApp

T0 = 1_780_000_000.0
# A backend made to hang waits 30 s: a key that takes this long to land means the UI is blocked
# on it. Far above any scheduling delay on a busy 2-core machine.
HANG_BOUND_S = 5.0
CATALOG = load_catalog()


def seed_state(directory: Path, flavor: str, running: bool = True, devices: int = 1) -> State:
    """A state file with `devices` accelerators, device 0 of `flavor` running a fixed job."""
    spec = CATALOG.get(flavor)
    jobs = ()
    if running:
        jobs = (
            JobRequest(
                976356,
                1548305,
                0,
                "python tutorial/train_gpt.py",
                spec.gpus,
                spec.nodes,
                T0 - 3600,
                "me",
            ),
        )
    state = State(
        tuple(Device(i, flavor if i == 0 else "Small.64GB") for i in range(devices)), 0, jobs
    )
    store = StateStore(directory)
    store.update(lambda _: state)
    return state


class CountingSimulator(SimulatorBackend):
    """The simulator, counting samples; it can be told to raise or to hang."""

    def __init__(self, t: float, **kwargs):
        super().__init__(clock=lambda: self.now, user="me", **kwargs)
        self.now = t
        self.host = "testhost"
        self.samples = 0
        self.fail: Exception | None = None
        self.hang = threading.Event()
        self.release = threading.Event()

    def sample(self, requests=()):
        self.samples += 1
        if self.hang.is_set():
            self.release.wait(30)
        if self.fail is not None:
            raise self.fail
        return super().sample(requests)


def make_app(
    directory: Path, t: float = T0, interval: float = 1.0, nodes: int = 64, **kwargs
) -> MoaiApp:
    ctx = Context(backend_spec="simulator")
    ctx.backend = CountingSimulator(t, nodes=nodes)
    app = MoaiApp(ctx, interval, **kwargs)
    return app


async def settle(pilot, app: MoaiApp, samples: int = 1) -> None:
    """Wait until the app has shown `samples` samples (the poller runs in a thread); fail if it
    never does."""
    for _ in range(500):
        if (
            app.sample is not None
            and app.backend.samples >= samples
            and app.in_flight_since is None
        ):
            break
        await pilot.pause(0.02)
    else:  # say so here, not in a later assertion that points elsewhere
        raise AssertionError(
            f"the app did not show sample {samples} within 10 s "
            f"(backend sampled {app.backend.samples}, error: {app.error})"
        )
    # A sample can land before the first layout or after it: wait until the screen has
    # stopped changing (every widget laid out at its final size), so a capture is the same in
    # every run.
    await screen_settled(pilot, app)


async def screen_settled(pilot, app) -> None:
    previous = None
    for _ in range(100):
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        shown = [
            "".join(segment.text for segment in strip)
            for strip in app.screen._compositor.render_strips()
        ]
        if shown == previous:
            return
        previous = shown
    raise AssertionError("the screen kept changing for 100 refreshes")
