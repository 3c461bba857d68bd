"""`moai-tui`: the live dashboard of the cluster, the user's accelerators, their GPUs and jobs.

The backend is sampled in a thread worker, one sample in flight at a time; the next one starts
an interval after the last has landed. What the screen shows of a sample (totals, job rows,
where an idle device would land) is derived in that thread too, and reaches the widgets as a
message (a newer one replaces an unhandled older one). A backend that raises or hangs leaves the
last good data on screen, marked stale, with the reason.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.geometry import Size
from textual.message import Message
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from moai_tui import actions
from moai_tui.catalog import Catalog
from moai_tui.config import MAX_INTERVAL, MIN_INTERVAL
from moai_tui.context import Context
from moai_tui.errors import MoaiError, UsageError, describe
from moai_tui.history import History
from moai_tui.model import ClusterSnapshot
from moai_tui.overview import (
    ClusterSummary,
    JobRow,
    Landing,
    device_state,
    job_rows,
    landing,
    summarise,
)
from moai_tui.sampling import Outcome, Sample, Sampler
from moai_tui.text.messages import CURRENT_OK, RELEASE_NONE, RELEASE_OK, SWITCHED
from moai_tui.text.safe import printable
from moai_tui.tui import lifecycle
from moai_tui.tui.screens import ConfirmScreen, FlavorPicker, HelpScreen
from moai_tui.tui.themes import DEFAULT_THEME, load_themes
from moai_tui.tui.widgets import (
    GRID_SORTS,
    JOB_SORTS,
    ClusterBar,
    ClusterGrid,
    DeviceRow,
    DeviceTable,
    GridData,
    HeaderBar,
    HeaderData,
    JobTable,
    Legend,
    SidePanel,
    fmt_pct,
    load_class,
)
from moai_tui.view import DeviceView, has_readings, node_memory, node_temp, node_util, plural

MIN_SIZE = (60, 15)
WIDE = 100  # from this width on, the side panel shows (HORIZONTAL_BREAKPOINTS below)
SIDE_WIDTH = 40  # as app.tcss sizes #side
JOBS_MIN_ROWS = 6  # the jobs table keeps at least this many lines (header included)


def follow_terminal_size() -> None:
    """Textual sizes the screen with shutil.get_terminal_size(), which prefers exported COLUMNS
    and LINES to the terminal itself: where they are exported (JupyterLab terminals, a tmux
    pane started from pytest) the screen would keep their size through every resize.
    Textual's web driver (moai-tui serve) takes its first size from COLUMNS and ROWS: kept."""
    if lifecycle.web_driven():
        return
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


@dataclass(frozen=True)
class Frame:
    """A sample and what the screen shows of it, derived off the UI thread."""

    sample: Sample
    summary: ClusterSummary
    jobs: tuple[JobRow, ...]
    states: dict[int, str]  # device -> its row's state phrase
    landings: dict[int, Landing]  # idle device -> where its flavor would start now
    holders: dict[int, str]  # job id -> user
    mine: frozenset[str]  # locations of the user's GPUs


def derive(sample: Sample, flavors) -> Frame:
    snapshot = sample.snapshot
    views = sample.views
    landings = {
        v.device: landing(v.flavor, snapshot)
        for v in views
        if v.flavor is not None and v.job is None and not snapshot.attached
    }
    return Frame(
        sample=sample,
        summary=summarise(snapshot, views, flavors),
        jobs=tuple(job_rows(snapshot, views)),
        states={v.device: device_state(v, snapshot, snapshot.time) for v in views},
        landings=landings,
        holders={job.job_id: job.user for job in snapshot.jobs},
        mine=frozenset(g.location for v in views for g in v.gpus),
    )


class Sampled(Message):
    def __init__(self, frame: Frame | None, error: str | None, history=()):
        super().__init__()
        self.frame = frame
        self.error = error
        self.history = history

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Sampled)


REFRESH = Binding.Group("refresh", compact=True)  # + slower, - faster


class KeysFooter(Footer):
    """Textual's footer draws its keys only while the app has focus. Textual's web driver blurs
    the app as it starts, and the browser's focus can arrive before that blur: the browser
    then showed an empty footer for good. The keys are always worth showing."""

    def bindings_changed(self, screen) -> None:
        self._bindings_ready = True
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self.recompose)


class MoaiApp(App[int]):
    TITLE = "moai-tui"
    CSS_PATH = "app.tcss"
    AUTO_FOCUS = "#grid"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE, "-wide")]
    BINDINGS = [
        Binding("f", "flavors", "flavor"),
        Binding("r", "stop_job", "stop job"),
        Binding("s", "sort", "sort"),
        Binding("p", "pause", "pause"),
        Binding("t", "next_theme", "theme"),
        Binding("question_mark,h,f1", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        # One footer entry, "+- refresh": two of their own did not fit 80 columns.
        Binding("plus,equals_sign", "interval(2.0)", "slower", key_display="+", group=REFRESH),
        Binding("minus", "interval(0.5)", "faster", key_display="-", group=REFRESH),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("d", "choose_device", "use device", show=False),
        Binding("ctrl+l", "redraw", "redraw", show=False),
    ]
    KEY_HELP = (
        ("f", "flavor picker for the selected device"),
        (
            "r",
            "stop a job (the job under the cursor in the jobs table, else the selected device's)",
        ),
        ("s", "sort the focused table: GPU grid (name, util, memory, temperature) or jobs"),
        ("p", "pause / resume refresh"),
        ("t", "next theme (remembered)"),
        ("+ / -", "refresh slower / faster (0.25 s to 10 s)"),
        ("d / enter", "make the selected device current (*)"),
        ("tab", "move focus: GPU grid, jobs, devices; arrows move inside"),
        ("ctrl+l", "redraw the screen"),
        ("? / h / F1", "this help"),
        ("q / ctrl+c", "quit"),
        ("ctrl+p", "command palette"),
    )
    WRITE_ACTIONS = frozenset({"flavors", "choose_device", "stop_job"})  # hidden by --read-only
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
        self.interval = clamp_interval(interval)
        self.hang_after = hang_after
        self.requested_theme = theme
        self.sampler = sampler or Sampler(ctx, host_probe=None)
        self._first = first  # a sample started before the UI, if any
        self.history = History()
        self.frame: Frame | None = None
        self.error: str | None = None
        self.paused = False
        self.in_flight_since: float | None = None  # set by the poller thread
        self.last_sample_at = time.monotonic()
        self._wake = threading.Event()
        self.host_name = socket.gethostname()
        self.our_themes: list[str] = []
        self._shown_theme = ""
        self._showing = False  # widgets take data once all are mounted (_start_showing)

    @property
    def sample(self) -> Sample | None:
        return self.frame.sample if self.frame else None

    # Layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(id="main"):
            yield HeaderBar(id="header")
            yield ClusterBar(id="cluster")
            yield Static(id="notice", markup=False)
            yield DeviceTable(id="devices")
            with Horizontal(id="middle"):
                with Vertical(id="left"):
                    with Vertical(id="grid-pane"):
                        yield ClusterGrid(id="grid")
                        yield Legend(id="legend")
                    with Vertical(id="jobs-pane"):
                        yield JobTable(id="jobs")
                yield SidePanel(id="side")
        yield Static(
            f"Enlarge the terminal: moai-tui needs at least {MIN_SIZE[0]}x{MIN_SIZE[1]}.",
            id="too-small",
        )
        yield KeysFooter()

    def on_mount(self) -> None:
        themes = load_themes()
        for theme in themes.values():
            self.register_theme(theme)
        self.our_themes = sorted(themes)
        wanted = self.requested_theme or self._saved_theme() or DEFAULT_THEME
        # Textual's own dark theme if even ours is missing (a broken install): never a traceback.
        fallbacks = (wanted, DEFAULT_THEME, "textual-dark")
        self.theme = self._shown_theme = next(n for n in fallbacks if n in self.available_themes)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        # Held once: a sample landing during shutdown must not query a screen being torn down.
        self.header = self.query_one(HeaderBar)
        self.cluster = self.query_one(ClusterBar)
        self.devices = self.query_one(DeviceTable)
        self.grid = self.query_one(ClusterGrid)
        self.legend = self.query_one(Legend)
        self.side = self.query_one(SidePanel)
        self.jobs = self.query_one(JobTable)
        self.notice = self.query_one("#notice", Static)
        self._show_notice()
        self._show_header()
        if self._first is not None and self._first.done():  # data in the very first frame
            try:
                self.on_sampled(self._message(self._first.result()))
            except Exception as error:  # the first sample failed: the poller says so next
                self.error = describe(error)
            self._first = None
        self.call_after_refresh(self._start_showing)
        self._poll_loop()
        self.set_interval(1.0, self._watch)
        if self.lifeline is not None:  # signals, a closed terminal, a server gone: lifecycle.py
            self.lifeline.arm(self)

    def _saved_theme(self) -> str | None:
        try:
            return self.ctx.store.load().theme
        except MoaiError:
            return None

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)
        self.query_one(Footer).compact = event.size.width < WIDE
        if self.frame is not None and self._showing:
            self._show_grid(event.size)  # self.size is still the old one here

    def _size_grid(self, size: Size) -> None:
        """The grid's room, from the screen's size and what stands above and below it, not
        from its own region: its layout (how many columns, one line per GPU or not) then never
        waits on a layout pass that itself depends on the grid's height."""
        width, height = size
        notice = self.notice.content.plain if self.notice.has_class("shown") else ""
        notice_lines = min(
            4, sum(1 + len(line) // max(1, width - 2) for line in notice.splitlines())
        )
        devices = 1 + (len(self.sample.views) if self.sample else 1)
        middle = height - 2 - notice_lines - devices - 1  # header, cluster line, footer
        jobs = max(JOBS_MIN_ROWS, middle // 3)
        self.grid.set_room(width - (SIDE_WIDTH if width >= WIDE else 0), middle - jobs - 3)

    def on_unmount(self) -> None:
        self._wake.set()  # let the poller see it is cancelled now, not an interval later

    def _check_size(self, size) -> None:
        width, height = size
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        if self.screen.has_class("too-small") != small:  # restyle only on a change
            self.screen.set_class(small, "too-small")

    # Polling --------------------------------------------------------------------------------
    def poll(self) -> None:
        """Sample now (after a switch, on resume) instead of at the end of the interval."""
        self._wake.set()

    def _message(self, outcome: Outcome) -> Sampled:
        """What the widgets need from an outcome, derived here (in the poller thread)."""
        if outcome.sample is None:
            return Sampled(None, outcome.error)
        return Sampled(derive(outcome.sample, self.ctx.catalog.flavors), None, outcome.history)

    @work(thread=True, exit_on_error=False, group="poll")
    def _poll_loop(self) -> None:
        """One thread for the app's life, one sample in flight: the next interval starts when
        the last sample has been handed over (a worker per tick cost more than the sample).
        Nothing that goes wrong in a sample ends the loop: it is shown, and the next one runs."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                if self._first is not None:
                    first, self._first = self._first, None
                    self.post_message(self._message(first.result()))
                elif not self.paused:
                    self.in_flight_since = time.monotonic()
                    self.post_message(self._message(self.sampler.take()))
            except Exception as error:  # a bug of ours, not the backend's: keep going, say it
                self.post_message(Sampled(None, describe(error)))
            finally:
                self.in_flight_since = None
            self._wake.wait(self.interval)
            self._wake.clear()

    def on_sampled(self, message: Sampled) -> None:
        if message.frame is not None:
            self.error = None
            self.frame = message.frame
            self.last_sample_at = time.monotonic()
            sample = self.frame.sample
            current = next((v for v in sample.views if v.current), None)
            if message.history and current is not None:
                self.history.preload(current.device, message.history[:-1])
            self.history.add(sample.views, sample.snapshot)
            if self._showing:
                self._render_frame()
        else:
            self.error = message.error
        self._show_notice()
        self._show_header()

    def _start_showing(self) -> None:
        """After the first refresh every widget is mounted: a widget that changes its height
        before that was seen to keep its first height for good (Textual 8.2.8)."""
        self._showing = True
        if self.frame is not None:
            self._render_frame()

    def _watch(self) -> None:
        """Once a second: a backend that hangs is shown as such while its sample is still out,
        and the size check runs again (a resize during start-up can outrun the Resize event).
        A tick can still come while the app shuts down, its screens already gone."""
        if not self.screen_stack:
            return
        self._show_header()
        self._show_notice()
        self._check_size(self.size)

    def stale_reason(self) -> str | None:
        if self.error:
            return self.error
        if self.paused:
            return None
        allowed = self.hang_after or max(3.0, 3 * self.interval)
        if self.in_flight_since is not None:
            waited = time.monotonic() - self.in_flight_since
            if waited > allowed:
                return f"backend not answering for {waited:.0f} s"
        silent = time.monotonic() - self.last_sample_at
        if self.frame is not None and silent > allowed + self.interval:
            return f"no new sample for {silent:.0f} s"
        return None

    # Rendering ------------------------------------------------------------------------------
    def _render_frame(self) -> None:
        if not self.grid.is_attached:  # a sample that lands while the app shuts down
            return
        frame = self.frame
        sample = frame.sample
        snapshot = sample.snapshot
        self.cluster.show(frame.summary, snapshot.local)
        rows = []
        for view in sample.views:
            power = [g.power_w for g in view.gpus if g.power_w is not None]
            rows.append(
                DeviceRow(view, frame.states.get(view.device, ""), sum(power) if power else None)
            )
        self.devices.show(rows)
        self._show_grid()
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
        if stale:
            status, style = "STALE", "stale"
            age = time.monotonic() - self.last_sample_at
            detail = f"last data {age:.0f} s ago" if self.frame else "no data yet"
        elif self.paused:
            status, style, detail = "paused", "paused", "p resumes"
        else:
            status, style, detail = "live", "live", f"every {self.interval:g}s"
        self.header.show(
            HeaderData(
                status=status,
                status_class=style,
                detail=detail,
                source=snapshot.backend if snapshot else self.backend.name,
                host=snapshot.host if snapshot and snapshot.host else self.host_name,
                version=version_label(snapshot) if snapshot else "",
            )
        )

    def _show_notice(self) -> None:
        """Whatever the user must read in full: why the data is stale, invalid readings, how
        the backend was chosen. Never cut, never parsed as markup."""
        lines = []
        if self.backend.notice:
            lines.append(self.backend.notice)
        stale = self.stale_reason()
        if stale:
            lines.append(f"⚠ {stale}")
        elif self.sample is not None and self.sample.invalid:
            lines.append(f"⚠ {self.sample.invalid}")
        text = printable("\n".join(lines))
        if str(self.notice.content) != text:
            self.notice.update(Content(text))
            self.notice.set_class(bool(text), "shown")
            self.notice.set_class(bool(stale), "error")

    def _show_grid(self, size: Size | None = None) -> None:
        frame = self.frame
        if frame is None:
            return
        self._size_grid(size or self.size)
        view = self.selected_view()
        selected = frozenset(g.location for g in view.gpus) if view else frozenset()
        where = frame.landings.get(view.device) if view else None
        self.grid.show(
            GridData(
                frame.sample.snapshot,
                frame.mine,
                selected,
                where if where is not None and not where.wait_reason else None,
                frame.holders,
            )
        )
        self._show_detail()

    def _show_detail(self) -> None:
        grid = self.grid
        frame = self.frame
        hidden = max(0, grid.rows_needed - len(grid.lines))
        self.query_one("#grid-pane").border_title = Content(
            f"Cluster · {plural(len(grid.nodes), 'node')}" if grid.nodes else "Cluster"
        )
        node = next((n for n in grid.nodes if n.name == grid.current_node()), None)
        node_line = ()
        if node is not None and self.size.width < WIDE:  # no side panel: its gist here
            util, memory, temp = node_util(node), node_memory(node), node_temp(node)
            node_line = (
                (printable(node.name), "bold"),
                (f" {fmt_pct(util)}", load_class(util)),
                (f" mem {fmt_pct(memory)}", "dim"),
                ("" if temp is None else f" {temp:.0f}°C", "dim"),
            )
        landing = grid.data is not None and grid.data.landing is not None
        self.legend.show(grid.sort, hidden, node_line, grid.mode, landing)
        if frame is None:
            return
        view = self.selected_view()
        points = tuple(self.history.devices.get(view.device, ())) if view else ()
        sample = frame.sample
        host = ""
        if sample.host_cpu is not None:
            host = f"host {self.host_name}: cpu {sample.host_cpu:.0f}%  mem {sample.host_mem:.0f}%"
        # One machine's GPUs are already drawn line by line in the grid.
        detail = None if grid.mode == "gpus" else node
        self.side.show(view, points, self.interval, detail, frame.holders, frame.mine, host)

    def _show_jobs(self) -> None:
        frame = self.frame
        sample = frame.sample
        self.jobs.show(frame.jobs, sample.snapshot.local, sample.processes)
        running = sum(1 for r in frame.jobs if not r.job.waiting)
        waiting = len(frame.jobs) - running
        title = f"Jobs · {running} running" + (f", {waiting} waiting" if waiting else "")
        users = frame.summary.users
        if users:
            shown = ", ".join(f"{printable(user)} {gpus}" for user, gpus in users[:6])
            title += f" · GPUs by user: {shown}" + (" …" if len(users) > 6 else "")
        title += f" · sort: {self.jobs.sort} (s)"
        self.query_one("#jobs-pane").border_title = Content(title)

    def on_cluster_grid_node_changed(self, message: ClusterGrid.NodeChanged) -> None:
        self._show_detail()

    def on_cluster_grid_shown_changed(self, message: ClusterGrid.ShownChanged) -> None:
        """A large cluster's backend fetches GPU by GPU only the nodes on screen, and the
        others' readings only where drawn; nodes that came into view as summaries, or without
        the readings now drawn, are asked for at once, not an interval later."""
        self.ctx.set_detail(message.nodes, message.readings)
        readings = message.readings
        for node in self.grid.nodes:
            summary = node.summary
            if summary is not None and (
                node.name in message.nodes
                or ((readings is None or node.name in readings) and not has_readings(summary))
            ):
                self.poll()
                return

    def on_device_table_highlighted(self, message: DeviceTable.Highlighted) -> None:
        self._show_grid()

    def on_device_table_selected(self, message: DeviceTable.Selected) -> None:
        self.action_choose_device()

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
        """Every key of the dashboard in the command palette (ctrl+p), and our themes; none of
        Textual's generic entries (its theme list, screenshot, keys, maximize)."""
        yield SystemCommand("Quit (q)", "Quit moai-tui", self.action_quit)
        if screen is not self.screen_stack[0]:
            return
        yield SystemCommand(
            "Flavor picker (f)", "Switch the selected device's flavor", self.action_flavors
        )
        yield SystemCommand(
            "Use device (d)", "Make the selected device current", self.action_choose_device
        )
        yield SystemCommand(
            "Stop job (r)", "Stop a job of yours (asks first)", self.action_stop_job
        )
        yield SystemCommand(
            "Sort (s)", "Sort the focused table by the next column", self.action_sort
        )
        yield SystemCommand("Pause / resume (p)", "Stop or restart refreshing", self.action_pause)
        yield SystemCommand(
            "Slower refresh (+)", "Refresh less often", partial(self.action_interval, 2.0)
        )
        yield SystemCommand(
            "Faster refresh (-)", "Refresh more often", partial(self.action_interval, 0.5)
        )
        yield SystemCommand("Next theme (t)", "Cycle the moai-tui themes", self.action_next_theme)
        for name in self.our_themes:
            yield SystemCommand(
                f"Theme: {name}",
                "Use this theme (remembered)",
                partial(setattr, self, "theme", name),
            )
        yield SystemCommand("Redraw (ctrl+l)", "Paint the whole screen again", self.action_redraw)
        yield SystemCommand("Help (?)", "Every key", self.action_help)

    def say(self, message: str, severity: str = "information", timeout: float = 4) -> None:
        """A toast whose text is never parsed as markup (it may quote a command or a path)."""
        self.notify(printable(message), severity=severity, timeout=timeout, markup=False)

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.last_sample_at = time.monotonic()
            self.poll()
        self._show_header()

    def action_interval(self, factor: float) -> None:
        self.interval = clamp_interval(round(self.interval * factor * 4) / 4)
        self._show_header()

    def action_next_theme(self) -> None:
        names = self.our_themes or [self.theme]
        following = (
            names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]
        )
        self.theme = following

    def _theme_changed(self, theme) -> None:
        """However the theme changed (t, the palette): remember it and say which it is."""
        name = theme.name
        if name == self._shown_theme:  # the signal of the theme set at start
            return
        self._shown_theme = name
        self._run_action(lambda: actions.remember_theme(self.ctx, name), None)
        self.say(f"theme: {name}", timeout=2)

    def action_redraw(self) -> None:
        """Paint every cell again: whatever another program wrote over the screen goes."""
        self.screen.refresh(self.screen.region, repaint=True)
        self.refresh(layout=True)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        hidden = {
            key
            for binding in self.BINDINGS
            if not self.check_action(binding.action, ())
            for key in binding.key.split(",")
        }
        self.push_screen(HelpScreen([h for h in self.KEY_HELP if h[0].split()[0] not in hidden]))

    def action_sort(self) -> None:
        if self.focused is self.grid:
            self.grid.set_sort(GRID_SORTS[(GRID_SORTS.index(self.grid.sort) + 1) % len(GRID_SORTS)])
            self._show_detail()
        else:
            self.jobs.set_sort(JOB_SORTS[(JOB_SORTS.index(self.jobs.sort) + 1) % len(JOB_SORTS)])
            if self.frame is not None:
                self._show_jobs()

    def action_choose_device(self) -> None:
        view = self.selected_view()
        if view is not None:
            self._run_action(lambda: actions.make_current(self.ctx, view.device), CURRENT_OK)

    def action_flavors(self) -> None:
        if self.sample is None:
            self.say(self.error or "no sample yet: the flavor list needs one", "error", 6)
            return
        view = self.selected_view()
        state = self.sample.state
        device = view.device if view else state.current
        current = state.device(device).flavor if state.device(device) else ""
        job = view.job if view else None
        busy = (job.job_id, job.command) if job is not None else None

        def chosen(name: str | None) -> None:
            if name:
                self._run_action(
                    lambda: actions.switch_flavor(self.ctx, name, device),
                    SWITCHED.format(name=name),
                )

        self.push_screen(
            FlavorPicker(self.ctx.catalog, current, self.sample.snapshot, device, busy=busy),
            chosen,
        )

    def action_stop_job(self) -> None:
        row = self.jobs.selected() if self.focused is self.jobs else None
        if row is not None and not row.mine:
            who = printable(row.job.user)
            self.say(
                f"job {row.job.job_id} is {who}'s: only your own jobs can be stopped", "warning"
            )
            return
        if row is not None:
            device, job = row.job.device, row.job
        else:
            view = self.selected_view()
            device, job = (view.device, view.job) if view else (None, None)
        if job is None or device is None:
            self.say(RELEASE_NONE, "warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_action(lambda: actions.release(self.ctx, device), RELEASE_OK)

        question = Text(f"Stop job {job.job_id} on device {device}?\n")
        question.append(printable(job.command), style="bold")
        self.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, exit_on_error=False, group="actions")
    def _run_action(self, action: Callable[[], object], success: str | None) -> None:
        """State changes are file I/O under a lock: off the UI thread."""
        if self.read_only:  # the last gate (enter on a device, the theme remembered)
            return
        try:
            action()
        except MoaiError as error:
            self.call_from_thread(self.say, str(error), "error", 6)
            return
        if success:
            self.call_from_thread(self.say, success)
        self.poll()


def clamp_interval(seconds: float) -> float:
    if not math.isfinite(seconds):
        return 1.0
    return min(MAX_INTERVAL, max(MIN_INTERVAL, seconds))


def version_label(snapshot: ClusterSnapshot) -> str:
    """What the version in the header is: the platform's, or a driver's."""
    current, latest = snapshot.version_current, snapshot.version_latest
    if snapshot.platform == "Moreh AI Platform":
        label = f"MoAI {current}"
        if latest not in ("-", "", current):
            label += f" (latest {latest})"
        return label
    if current in ("-", ""):  # the platform alone, unless it only names the backend again
        return "" if snapshot.platform.lower() == snapshot.backend else snapshot.platform
    return f"{snapshot.platform} {current}"


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
    The snapshot (for "fits now") is taken and the themes are loaded by the caller before the
    UI starts, so a bad theme file is one line, not a traceback."""

    CSS_PATH = "app.tcss"

    def __init__(
        self,
        catalog: Catalog,
        device: int,
        current: str,
        snapshot: ClusterSnapshot | None,
        themes: dict | None = None,
        busy=None,
    ):
        super().__init__()
        self.catalog = catalog
        self.device = device
        self.current = current
        self.snapshot = snapshot
        self.themes = themes or {}
        self.busy = busy

    def on_mount(self) -> None:
        for theme in self.themes.values():
            self.register_theme(theme)
        self.theme = DEFAULT_THEME if DEFAULT_THEME in self.themes else self.theme
        self.push_screen(
            FlavorPicker(self.catalog, self.current, self.snapshot, self.device, busy=self.busy),
            self.exit,
        )
