"""`moai-tui`: the live dashboard of the user's accelerator, its nodes, GPUs, jobs and history.

The backend is sampled in a thread worker, one sample in flight at a time; the next one is
scheduled only when the last has landed. The result reaches the widgets as a message (a newer
one replaces an unhandled older one), and each widget repaints only what changed. A backend that
raises or hangs leaves the last good data on screen, marked stale, with the error.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from moai_tui import actions
from moai_tui.catalog import Catalog
from moai_tui.config import MAX_INTERVAL, MIN_INTERVAL
from moai_tui.context import Context
from moai_tui.errors import MoaiError, UsageError
from moai_tui.model import ClusterSnapshot
from moai_tui.sampling import Outcome, Sample, Sampler
from moai_tui.text.messages import CURRENT_OK, RELEASE_NONE, RELEASE_OK, SWITCHED
from moai_tui.text.smi import safe_command
from moai_tui.tui import lifecycle
from moai_tui.tui.screens import ConfirmScreen, FlavorPicker, HelpScreen
from moai_tui.tui.themes import DEFAULT_THEME, load_themes
from moai_tui.tui.widgets import (
    DeviceList,
    GpuMap,
    GpuScroll,
    HeaderBar,
    History,
    JobList,
    SidePanel,
    load_style,
)
from moai_tui.view import (
    DeviceView,
    fmt_bytes,
    fmt_duration,
    fmt_mib,
    fmt_percent,
    fmt_runtime,
    sparkline,
)

MIN_SIZE = (60, 15)
JOB_ROWS = 60  # other users' jobs beyond this are left out of the table


def follow_terminal_size() -> None:
    """Textual sizes the screen with shutil.get_terminal_size(), which prefers exported COLUMNS
    and LINES to the terminal itself: where they are exported (JupyterLab terminals, a tmux
    pane started from pytest) the screen would keep their size through every resize.
    Textual's web driver (moai-tui serve) takes its first size from COLUMNS and ROWS: kept."""
    if lifecycle.web_driven():
        return
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


class Sampled(Message):
    def __init__(self, outcome: Outcome):
        super().__init__()
        self.sample = outcome.sample
        self.error = outcome.error
        self.history = outcome.history

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Sampled)


class MoaiApp(App[int]):
    TITLE = "moai-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("f", "flavors", "flavor"),
        Binding("d", "choose_device", "use device"),
        Binding("p", "pause", "pause"),
        Binding("plus,equals_sign", "interval(2.0)", "interval", key_display="+"),
        Binding("minus", "interval(0.5)", "interval", key_display="-"),
        Binding("t", "next_theme", "theme"),
        Binding("r", "reset", "reset"),
        Binding("question_mark", "help", "help", key_display="?"),
    ]
    KEY_HELP = (
        ("q", "quit"),
        ("f", "flavor picker for the selected device"),
        ("d / enter", "make the selected device current"),
        ("p", "pause / resume refresh"),
        ("+ / -", "longer / shorter refresh interval (0.25 s to 10 s)"),
        ("t", "next theme"),
        ("r", "reset: stop the selected device's job (asks first)"),
        ("?", "this help"),
        ("tab", "move focus: devices, GPUs, jobs"),
        ("ctrl+p", "command palette"),
    )
    WRITE_ACTIONS = frozenset({"flavors", "choose_device", "reset"})  # hidden by --read-only
    read_only = False  # set by run_app: show everything, change nothing
    lifeline: lifecycle.Lifeline | None = None  # set by run_app; tests run without one

    def __init__(
        self,
        ctx: Context,
        interval: float = 1.0,
        theme: str | None = None,
        sampler: Sampler | None = None,
        first: Future | None = None,
        hang_after: float | None = None,
    ):
        super().__init__()
        self.ctx = ctx
        self.backend = ctx.backend
        self.interval = max(MIN_INTERVAL, interval)
        self.hang_after = hang_after
        self.requested_theme = theme
        self.sampler = sampler or Sampler(ctx, host_probe=None)
        self._first = first  # a sample started before the UI, if any
        self.history = History()
        self.sample: Sample | None = None
        self.samples_shown = 0  # counts samples on screen: a cheap key for "data changed"
        self.error: str | None = None
        self.paused = False
        self.in_flight_since: float | None = None  # set by the poller thread
        self._wake = threading.Event()
        self.host_name = socket.gethostname()
        self.our_themes: list[str] = []

    # Layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(id="main"):
            yield HeaderBar(id="header")
            yield Static(id="notice")
            yield DeviceList(id="devices")
            with Horizontal(id="middle"):
                with GpuScroll(id="gpu-scroll"):
                    yield GpuMap(id="gpus")
                yield SidePanel(id="side")
            with VerticalScroll(id="jobs"):
                yield JobList(id="job-list")
        yield Static(
            f"Enlarge the terminal: moai-tui needs at least {MIN_SIZE[0]}x{MIN_SIZE[1]}.",
            id="too-small",
        )
        yield Footer()

    def on_mount(self) -> None:
        themes = load_themes()
        for theme in themes.values():
            self.register_theme(theme)
        self.our_themes = sorted(themes)
        wanted = self.requested_theme or self._saved_theme() or DEFAULT_THEME
        # Textual's own dark theme if even ours is missing (a broken install): never a traceback.
        fallbacks = (wanted, DEFAULT_THEME, "textual-dark")
        self.theme = next(name for name in fallbacks if name in self.available_themes)
        # Held once: a sample landing during shutdown must not query a screen being torn down.
        self.header = self.query_one(HeaderBar)
        self.devices = self.query_one(DeviceList)
        self.gpu_map = self.query_one(GpuMap)
        self.gpu_scroll = self.query_one("#gpu-scroll")
        self.side = self.query_one(SidePanel)
        self.jobs = self.query_one(JobList)
        if self.backend.notice:
            self._notice(self.backend.notice)
        if self._first is not None and self._first.done():  # data in the very first frame
            self.on_sampled(Sampled(self._first.result()))
            self._first = None
        self._poll_loop()
        self.set_interval(1.0, self._watch)
        if self.lifeline is not None:  # signals, a closed terminal, a server gone: lifecycle.py
            self.lifeline.arm(self)

    def _saved_theme(self) -> str | None:
        try:
            return self.ctx.store.load().theme
        except MoaiError:
            return None

    def _notice(self, text: str) -> None:
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.set_class(bool(text), "shown")

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)  # self.size can still be the old size here
        if self.sample is not None:
            self._show_gpus()

    def on_unmount(self) -> None:
        self._wake.set()  # let the poller see it is cancelled now, not an interval later

    def _check_size(self, size: Size) -> None:
        width, height = size
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        if self.screen.has_class("too-small") != small:  # restyle only on a change
            self.screen.set_class(small, "too-small")

    # Polling --------------------------------------------------------------------------------
    def poll(self) -> None:
        """Sample now (after a switch, on resume) instead of at the end of the interval."""
        self._wake.set()

    @work(thread=True, exit_on_error=False, group="poll")
    def _poll_loop(self) -> None:
        """One thread for the app's life, one sample in flight: the next interval starts when
        the last sample has been handed over (a worker per tick cost more than the sample)."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            if self._first is not None:
                outcome, self._first = self._first.result(), None
                self.post_message(Sampled(outcome))
            elif not self.paused:
                self.in_flight_since = time.monotonic()
                outcome = self.sampler.take()
                self.in_flight_since = None
                self.post_message(Sampled(outcome))
            self._wake.wait(self.interval)
            self._wake.clear()

    def on_sampled(self, message: Sampled) -> None:
        if message.sample is not None:
            self.error = None
            self.sample = message.sample
            current = next((v for v in self.sample.views if v.current), None)
            if message.history and current is not None:
                self.history.preload(current.device, message.history[:-1])
            self.history.add(self.sample.views, self.sample.snapshot)
            self.samples_shown += 1
            self._render_sample()
        else:
            self.error = message.error
        self._show_header()

    def _watch(self) -> None:
        """Once a second: a backend that hangs is shown as such while its sample is still out,
        and the size check runs again (a resize during start-up can outrun the Resize event)."""
        self._show_header()
        self._check_size(self.size)

    def stale_reason(self) -> str | None:
        if self.error:
            return self.error
        if self.in_flight_since is not None:
            waited = time.monotonic() - self.in_flight_since
            if waited > (self.hang_after or max(3.0, 3 * self.interval)):
                return f"backend not answering for {waited:.0f} s"
        return None

    # Rendering ------------------------------------------------------------------------------
    def _render_sample(self) -> None:
        sample = self.sample
        devices = self.devices
        devices.show_views(sample.views)
        self._show_gpus()
        self._show_side()
        self._show_jobs()

    def selected_view(self) -> DeviceView | None:
        if self.sample is None:
            return None
        chosen = self.devices.selected_device()
        views = self.sample.views
        return next((v for v in views if v.device == chosen), None) or next(
            (v for v in views if v.current), views[0] if views else None
        )

    def _show_header(self) -> None:
        snapshot = self.sample.snapshot if self.sample else None
        stale = self.stale_reason()
        status = ("paused", "warning") if self.paused else ("live", "success")
        if stale:
            status = ("STALE", "error")
        theme = self.current_theme
        text = Text(" MoAI ", style=f"bold reverse {theme.primary}")
        text.append(f" ● {status[0]}", style=f"bold {getattr(theme, status[1]) or ''}")
        text.append(f" {self.interval:g}s")
        if stale:
            text.append(f"  {stale}", style=theme.error or "red")
        elif self.sample is not None and self.sample.invalid:
            text.append(f"  ⚠ {self.sample.invalid}", style=theme.warning or "yellow")
        if snapshot:
            text.append(
                f" │ {snapshot.backend} │ {snapshot.host or self.host_name} │ "
                f"Current Version: {snapshot.version_current}  "
                f"Latest Version: {snapshot.version_latest}"
            )
        key = (text.plain, theme.name)
        self.header.show(key, lambda _width: text)

    def _show_gpus(self) -> None:
        view = self.selected_view()
        gpu_map = self.gpu_map
        if view is None:
            gpu_map.set_gpus((), "no devices")
        elif not view.active:
            waiting = view.job is not None and view.job.waiting
            message = f"Device {view.device} ({view.flavor_name}): " + (
                "job waiting for free GPUs..."
                if waiting
                else "idle, no GPUs allocated. Start a job to see them "
                "(moai-tui run -- CMD, or moai-tui sim start CMD)."
            )
            gpu_map.set_gpus((), message)
        else:
            gpu_map.set_gpus(view.gpus, "")

    def on_gpu_map_node_changed(self, message: GpuMap.NodeChanged) -> None:
        self._show_side()

    def on_device_list_highlighted(self, message: DeviceList.Highlighted) -> None:
        if self.sample is not None:
            self._show_gpus()
            self._show_side()

    def _show_side(self) -> None:
        view = self.selected_view()
        gpu_map = self.gpu_map
        node = gpu_map.current_node() if gpu_map.compact else None
        key = (self.samples_shown, view and view.device, node, self.current_theme.name)
        self.side.show(key, partial(self._side_text, view, node, self.current_theme))

    def _side_text(self, view: DeviceView | None, node: str | None, theme, width: int) -> Text:
        width = max(10, width - 10)
        text = Text()
        if view is not None:
            points = list(self.history.devices.get(view.device, ()))
            util = [u for u, _ in points]
            mem = [m for _, m in points]
            text.append(f"Device {view.device} · {view.flavor_name}\n", style="bold")
            text.append("util ")
            text.append(sparkline(util, width), style=load_style(theme, view.utilization))
            text.append(f"{fmt_percent(view.utilization):>5}\n")
            mem_now = mem[-1] if mem else None
            text.append("mem  ")
            text.append(sparkline(mem, width), style=load_style(theme, mem_now))
            text.append(f"{fmt_percent(mem_now):>5}\n")
            text.append("     0-100 % scale, last ", style="dim")
            text.append(f"{fmt_duration(len(points) * self.interval)}\n", style="dim")
            if node is not None:
                node_util = list(self.history.nodes.get(node, ()))
                gpus = dict(self.gpu_map.nodes).get(node, [])
                text.append(f"\n{node}\n", style="bold")
                text.append("util ")
                text.append(sparkline(node_util, width))
                text.append(f"{fmt_percent(node_util[-1] if node_util else None):>5}\n")
                for gpu in gpus:
                    text.append(
                        f"  {gpu.index} {fmt_percent(gpu.util):>5}  "
                        f"{fmt_mib(gpu.mem_used_mib):>10}  "
                        f"{'-' if gpu.temp_c is None else f'{gpu.temp_c:.0f}°C'}\n"
                    )
        if self.sample is not None and self.sample.host_cpu is not None:
            text.append(
                f"\nhost {self.host_name}: cpu {self.sample.host_cpu:4.1f} %  "
                f"mem {self.sample.host_mem:4.1f} %",
                style="dim",
            )
        return text

    def _show_jobs(self) -> None:
        sample = self.sample
        now = sample.snapshot.time
        mine = [
            j
            for j in sample.snapshot.jobs
            if j.user == sample.snapshot.user and j.device is not None
        ]
        others = [j for j in sample.snapshot.jobs if j not in mine][:JOB_ROWS]
        rows: dict[str, tuple[str, ...]] = {}
        for job in mine + others:
            cpu, rss = sample.processes.get(job.pid, (None, None))
            rows[str(job.job_id)] = (
                "-" if job.device is None else str(job.device),
                str(job.job_id),
                str(job.pid),
                job.user,
                safe_command(job.command),
                "waiting" if job.waiting else fmt_mib(job.mem_used_mib),
                "-" if job.util is None else f"{job.util:.0f}",
                fmt_runtime(now - job.started) if job.started else "-",
                "-" if cpu is None else f"{cpu:.0f}",
                fmt_bytes(rss),
            )
        self.jobs.show_rows(rows)

    # Actions --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """--read-only: keys, footer and palette entries that change state are gone."""
        return not (self.read_only and action in self.WRITE_ACTIONS)

    def get_system_commands(self, screen) -> Iterable[SystemCommand]:
        for command in self._palette(screen):
            callback = getattr(command.callback, "func", command.callback)  # through a partial
            if self.check_action(callback.__name__.removeprefix("action_"), ()):
                yield command

    def _palette(self, screen) -> Iterable[SystemCommand]:
        """Every key of the dashboard is in the command palette (ctrl+p) too."""
        yield from super().get_system_commands(screen)
        if screen is not self.screen_stack[0]:
            return
        yield SystemCommand(
            "Flavor picker (f)", "Switch the selected device's flavor", self.action_flavors
        )
        yield SystemCommand(
            "Use device (d)", "Make the selected device current", self.action_choose_device
        )
        yield SystemCommand("Pause / resume (p)", "Stop or restart refreshing", self.action_pause)
        yield SystemCommand(
            "Longer interval (+)", "Refresh less often", partial(self.action_interval, 2.0)
        )
        yield SystemCommand(
            "Shorter interval (-)", "Refresh more often", partial(self.action_interval, 0.5)
        )
        yield SystemCommand("Next theme (t)", "Cycle the moai-tui themes", self.action_next_theme)
        yield SystemCommand(
            "Reset device (r)", "Stop the selected device's job (asks first)", self.action_reset
        )
        yield SystemCommand("Help (?)", "Every key", self.action_help)

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.poll()
        self._show_header()

    def action_interval(self, factor: float) -> None:
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, round(self.interval * factor * 4) / 4))
        self._show_header()

    def action_next_theme(self) -> None:
        names = self.our_themes or [self.theme]
        following = (
            names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]
        )
        self.theme = following
        self._run_action(lambda: actions.remember_theme(self.ctx, following), None)
        self._show_header()
        if self.sample is not None:
            self._render_sample()

    def action_help(self) -> None:
        hidden = {
            key
            for binding in self.BINDINGS
            if not self.check_action(binding.action, ())
            for key in binding.key.split(",")
        }
        self.push_screen(HelpScreen([h for h in self.KEY_HELP if h[0].split()[0] not in hidden]))

    def action_choose_device(self) -> None:
        view = self.selected_view()
        if view is not None:
            self._run_action(
                lambda: actions.make_current(self.ctx, view.device),
                CURRENT_OK,
            )

    def on_device_list_selected(self, message: DeviceList.Selected) -> None:
        self.action_choose_device()

    def action_flavors(self) -> None:
        view = self.selected_view()
        state = self.sample.state if self.sample else self.ctx.store.load()
        device = view.device if view else state.current
        current = state.device(device).flavor if state.device(device) else ""
        snapshot = self.sample.snapshot if self.sample else None

        def chosen(name: str | None) -> None:
            if name:
                self._run_action(
                    lambda: actions.switch_flavor(self.ctx, name, device),
                    SWITCHED.format(name=name),
                )

        self.push_screen(FlavorPicker(self.ctx.catalog, current, snapshot, device), chosen)

    def action_reset(self) -> None:
        view = self.selected_view()
        if view is None or view.job is None:
            self.notify(RELEASE_NONE, severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_action(lambda: actions.release(self.ctx, view.device), RELEASE_OK)

        self.push_screen(
            ConfirmScreen(
                f"Stop job {view.job.job_id} ({view.job.command}) on device {view.device}?"
            ),
            answered,
        )

    @work(thread=True, exit_on_error=False, group="actions")
    def _run_action(self, action: Callable[[], object], success: str | None) -> None:
        """State changes are file I/O under a lock: off the UI thread."""
        if self.read_only:  # the last gate (enter on a device, the theme remembered)
            return
        try:
            action()
        except MoaiError as error:
            self.call_from_thread(self.notify, str(error), severity="error", timeout=6)
            return
        if success:
            self.call_from_thread(self.notify, success)
        self.poll()


def run_app(
    ctx: Context,
    interval: float,
    theme: str | None,
    sampler: Sampler,
    first: Future,
    read_only: bool = False,
) -> int:
    """Run the dashboard; a bad theme name is refused before the screen changes."""
    themes = load_themes()
    wanted = theme or ctx.config.theme
    if wanted and wanted not in themes:
        raise UsageError(f"unknown theme {wanted!r}: choose one of {', '.join(sorted(themes))}")
    app = MoaiApp(ctx, interval, wanted, sampler, first)
    app.read_only = read_only
    app.lifeline = lifecycle.Lifeline()
    follow_terminal_size()
    app.run()
    return app.return_code or 0


class PickerApp(App[str | None]):
    """`moai-tui switch` on a terminal: just the flavor picker, returning the chosen name.
    The snapshot (for "fits now") is taken by the caller before the UI starts."""

    def __init__(
        self, catalog: Catalog, device: int, current: str, snapshot: ClusterSnapshot | None
    ):
        super().__init__()
        self.catalog = catalog
        self.device = device
        self.current = current
        self.snapshot = snapshot

    def on_mount(self) -> None:
        themes = load_themes()
        for theme in themes.values():
            self.register_theme(theme)
        self.theme = DEFAULT_THEME if DEFAULT_THEME in themes else self.theme
        self.push_screen(
            FlavorPicker(self.catalog, self.current, self.snapshot, self.device), self.exit
        )
