"""Dashboard widgets. Each keeps the last data it was given and lays it out at render time, at
its current size: a sample that lands before the first layout gives the same screen as one that
lands after. Colours come from component classes (the theme's CSS variables), so a theme change
repaints everything. Only the lines whose content changed are repainted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from moai_tui.model import ClusterSnapshot, Gpu, Node
from moai_tui.overview import ClusterSummary, JobRow, Landing, natural_key
from moai_tui.text.safe import printable
from moai_tui.tui.lines import Line, Run, fit, line_width, merge, to_strip
from moai_tui.view import (
    DeviceView,
    detail_nodes,
    fmt_bytes,
    fmt_mem,
    fmt_mem_pair,
    fmt_power,
    fmt_runtime,
    is_free,
    node_memory,
    node_power,
    node_temp,
    node_util,
    plural,
    reading_nodes,
    temperature_band,
)

SPARKS = "▁▂▃▄▅▆▇█"
# Gpu.job_id 0: Slurm says the GPU is allocated, not to whom (PrivateData=jobs).
HIDDEN_JOB = "held · job hidden"
BLOCKS = " ▏▎▍▌▋▊▉█"


def load_class(percent: float | None) -> str:
    """The style of a utilization or memory level (nvitop's convention: hotter is redder)."""
    if percent is None:
        return "dim"
    if percent >= 90:
        return "full"
    if percent >= 60:
        return "high"
    if percent >= 20:
        return "mid"
    return "low"


def temp_class(temp_c: float | None) -> str:
    band = temperature_band(temp_c)
    return "" if band is None else f"temp-{band}"


def spark(percent: float) -> str:
    level = max(0.0, min(100.0, percent)) / 100.0
    return SPARKS[max(0, min(7, round(level * 8) - 1))]


def bar_runs(percent: float | None, width: int) -> list[Run]:
    """A horizontal bar, eighths of a cell resolved, on a dim track."""
    if percent is None:
        return [("-".center(width), "dim")]
    eighths = round(max(0.0, min(100.0, percent)) / 100.0 * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (BLOCKS[part] if part else "")
    return [(filled, load_class(percent)), ("·" * (width - len(filled)), "track")]


def sparkline(values: Sequence[float | None], width: int) -> str:
    """The last `width` values on a fixed 0..100 scale (never auto-scaled); None is blank."""
    shown = list(values)[-width:]
    return "".join(" " if v is None else spark(v) for v in shown).rjust(width)


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def fit_parts(parts: Sequence[tuple[int, list[Run]]], width: int, sep: Run) -> Line:
    """Keep the parts that fit, dropping the least important (highest number) first."""
    kept = list(parts)
    while kept:
        line = merge(_join(kept, sep))
        if line_width(line) <= width or len(kept) == 1:
            return line
        kept.remove(max(kept, key=lambda part: part[0]))
    return ()


def _join(parts: Sequence[tuple[int, list[Run]]], sep: Run) -> list[Run]:
    runs: list[Run] = []
    for number, (_, part) in enumerate(parts):
        if number:
            runs.append(sep)
        runs.extend(part)
    return runs


class LineWidget(Widget):
    """Lines of styled runs, drawn through the Line API. Subclasses fill `lines`."""

    # Component classes shared by every dashboard widget; the CSS (app.tcss) gives each a colour
    # from the theme.
    COMPONENT_CLASSES = {
        "dim",
        "bold",
        "track",
        "low",
        "mid",
        "high",
        "full",
        "free",
        "land",
        "lost",
        "drained",
        "mine",
        "cursor",
        "cursor-blur",
        "header",
        "brand",
        "live",
        "paused",
        "stale",
        "replay",
        "label",
        "label-mine",
        "temp-caution",
        "temp-warning",
        "temp-act",
        "waiting",
        "free-count",
        "cursor-mark",
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: list[Line] = []
        # Names -> the widget's own style with theirs on top, until the styles change (theme,
        # focus): every segment of every line drawn takes one.
        self._styles: dict[str, Style] = {}

    def style_of(self, names: str) -> Style:
        """The style of space-separated component classes, later ones on top of earlier ones,
        over the widget's own. Each contributes only what its CSS sets, with colours such as
        `$foreground 55%` blended against the background (a partial style alone leaves them
        unblended)."""
        style = self._styles.get(names)
        if style is None:
            style = self.rich_style
            for name in names.split():
                full = self.get_component_rich_style(name)
                own = self.get_component_rich_style(name, partial=True)
                style += Style(
                    color=full.color if own.color else None,
                    bgcolor=full.bgcolor if own.bgcolor else None,
                )
                style += own.without_color
            self._styles[names] = style
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self.refresh()

    @property
    def plain(self) -> str:
        """The text shown, without styles (what tests and the web view's readers check)."""
        return "\n".join("".join(text for text, _ in line) for line in self.lines)

    def show_lines(self, lines: list[Line]) -> None:
        """Repaint the lines that changed; a change of count asks for a layout."""
        old = self.lines
        self.lines = lines
        if len(lines) != len(old):
            self.refresh(layout=True)
            return
        width = self.size.width
        for y, (new, before) in enumerate(zip(lines, old, strict=True)):
            if new != before:
                self.refresh(Region(0, y, width, 1))

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self.lines))

    def render_line(self, y: int) -> Strip:
        if y >= len(self.lines):
            return Strip.blank(self.size.width, self.style_of(""))
        return to_strip(self.lines[y], self.size.width, self.style_of)

    def on_resize(self) -> None:
        self.relayout()

    def relayout(self) -> None:
        """Lay the data out again at the current size (subclasses that depend on it)."""


# Header and cluster line ------------------------------------------------------------------
@dataclass(frozen=True)
class HeaderData:
    status: str  # live, paused, STALE, REPLAY ...
    status_class: str
    detail: str  # "every 1s", "12/66 s", "no answer for 5 s"
    source: str  # backend name
    host: str
    version: str  # "MoAI 24.5.0", "driver 580.159.04", ...


class HeaderBar(LineWidget):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data: HeaderData | None = None

    def show(self, data: HeaderData) -> None:
        if data != self.data:
            self.data = data
            self.relayout()

    def relayout(self) -> None:
        data = self.data
        if data is None:
            self.show_lines([((" MoAI ", "brand"),)])
            return
        parts = [
            (0, [(" MoAI ", "brand"), (" ", ""), (f"● {data.status}", data.status_class)]),
            (1, [(data.detail, "dim")]),
            (2, [(printable(data.source), "")]),
            (4, [(printable(data.host), "dim")]),
            (3, [(printable(data.version), "")]),
        ]
        width = self.size.width or 80
        self.show_lines([fit_parts([p for p in parts if p[1][0][0]], width, ("  ", ""))])


class ClusterBar(LineWidget):
    """The cluster in one line: capacity, what is free, what the user holds, what fits now."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.summary: ClusterSummary | None = None
        self.local = False

    def show(self, summary: ClusterSummary, local: bool) -> None:
        if (summary, local) != (self.summary, self.local):
            self.summary, self.local = summary, local
            self.relayout()

    def relayout(self) -> None:
        s = self.summary
        if s is None:
            self.show_lines([(("waiting for the first sample...", "dim"),)])
            return
        what = "this machine" if self.local else "cluster"
        nodes = "" if self.local else f" on {plural(s.nodes, 'node')}"
        parts: list[tuple[int, list[Run]]] = [
            (0, [(f"{what} ", "bold"), (f"{s.gpus} GPUs{nodes}", "")]),
            (1, [(f"{s.free} free", "free-count" if s.free else "dim")]),
            (2, [("util ", "dim"), (fmt_pct(s.mean_util), load_class(s.mean_util))]),
            (3, [("you ", "dim"), (f"{s.mine_gpus} GPUs", "label-mine" if s.mine_gpus else "")]),
        ]
        if not self.local and s.nodes > 1:
            parts.insert(2, (5, [(f"{s.whole_free_nodes} whole nodes free", "")]))
        if s.mine_gpus:
            parts.append((6, [("at ", "dim"), (fmt_pct(s.mine_util), load_class(s.mine_util))]))
            parts.append((7, [(fmt_mem(s.mine_mem_mib), "")]))
        parts.append((4, [("fits now: ", "dim"), (s.largest_fit or "nothing", "bold")]))
        if s.down_nodes:
            parts.append((1, [(f"{s.down_nodes} down", "lost")]))
        elif s.lost_gpus:
            parts.append((1, [(f"{s.lost_gpus} GPUs lost", "lost")]))
        if s.waiting_jobs:
            parts.append((8, [(f"{s.waiting_jobs} waiting", "waiting")]))
        self.show_lines([fit_parts(parts, self.size.width or 80, (" · ", "dim"))])


# Devices ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceRow:
    view: DeviceView
    state: str
    power_w: float | None


class DeviceTable(LineWidget, can_focus=True):
    """The user's accelerators, one row each (moreh-smi's table, readable units). The cursor
    starts on the current device and follows it until the user moves it."""

    BINDINGS = [
        Binding("up,k", "move(-1)", show=False),
        Binding("down,j", "move(1)", show=False),
        Binding("enter", "select", show=False),
    ]

    class Highlighted(Message):
        def __init__(self, device: int) -> None:
            super().__init__()
            self.device = device

    class Selected(Message):
        def __init__(self, device: int) -> None:
            super().__init__()
            self.device = device

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[DeviceRow] = []
        self.cursor = 0
        self.moved_by_user = False

    def show(self, rows: list[DeviceRow]) -> None:
        current = next((i for i, r in enumerate(rows) if r.view.current), 0)
        if not self.moved_by_user or self.cursor >= len(rows):
            self.cursor = current
        self.rows = rows
        self.relayout()

    def selected_device(self) -> int | None:
        return self.rows[self.cursor].view.device if self.rows else None

    def row_cells(self, device: int) -> tuple[str, ...]:
        """The plain text of a device's cells (tests read the table through this)."""
        for row in self.rows:
            if row.view.device == device:
                cells = self._cells(row, self._widths())
                return tuple("".join(text for text, _ in cell).strip() for cell in cells)
        raise KeyError(device)

    def _widths(self) -> dict[str, int]:
        name = max([len(r.view.flavor_name) for r in self.rows] + [6])
        width = self.size.width or 80
        widths = {"mark": 1, "dev": 3, "flavor": min(name, 18), "gpus": 13}
        widths["memory"] = 15 if width >= 100 else 9
        widths["util"] = 12
        widths["power"] = 8 if width >= 120 else 0
        used = sum(w + 1 for w in widths.values() if w) + 1
        widths["state"] = max(10, width - used)
        return widths

    def _cells(self, row: DeviceRow, widths: dict[str, int]) -> list[list[Run]]:
        """One list of runs per column, each as wide as its column."""
        view = row.view
        flavor = view.flavor
        gpus = plural(flavor.gpus, "GPU") if flavor else "-"
        if flavor and flavor.nodes > 1:
            gpus += f" ·{flavor.nodes}n"
        if widths["memory"] >= 15:
            memory = fmt_mem_pair(view.memory_used_mib, view.memory_total_mib)
        else:
            memory = fmt_mem(view.memory_used_mib)
        util = view.utilization
        cells: list[list[Run]] = [
            [("*" if view.current else " ", "bold")],
            [(fit(str(view.device), widths["dev"]), "")],
            [(fit(view.flavor_name, widths["flavor"]), "bold" if view.current else "")],
            [(fit(gpus, widths["gpus"]), "")],
            [(fit(memory, widths["memory"]), "")],
            [*bar_runs(util, 7), (f" {fmt_pct(util):>4}", load_class(util))]
            if util is not None
            else [(fit("-", widths["util"]), "dim")],
        ]
        if widths["power"]:
            cells.append([(fit(fmt_power(row.power_w), widths["power"]), "")])
        state = row.state
        style = (
            "waiting" if state.startswith("waiting") else "dim" if state.startswith("idle") else ""
        )
        cells.append([(fit(printable(state), widths["state"]), style)])
        return cells

    def relayout(self) -> None:
        widths = self._widths()
        heads = [("", "mark"), ("Dev", "dev"), ("Flavor", "flavor"), ("GPUs", "gpus")]
        heads += [("Memory", "memory"), ("Util", "util")]
        heads += [("Power", "power")] if widths["power"] else []
        heads += [("State", "state")]
        header = merge([(" ", "header")] + [(fit(t, widths[k]) + " ", "header") for t, k in heads])
        lines = [header]
        for number, row in enumerate(self.rows):
            runs: list[Run] = [(" ", "")]
            for cell in self._cells(row, widths):
                runs += [*cell, (" ", "")]
            line = merge(runs)
            if number == self.cursor:
                cursor = "cursor" if self.has_focus else "cursor-blur"
                line = tuple((text, f"{style} {cursor}".strip()) for text, style in line)
            lines.append(line)
        self.show_lines(lines)

    def _move_to(self, row: int) -> None:
        if self.rows and 0 <= row < len(self.rows) and row != self.cursor:
            self.cursor = row
            self.moved_by_user = True
            self.relayout()
            self.post_message(self.Highlighted(self.selected_device()))

    def action_move(self, delta: int) -> None:
        self._move_to(max(0, min(len(self.rows) - 1, self.cursor + delta)))

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.Selected(self.selected_device()))

    def on_click(self, event: events.Click) -> None:
        self._move_to(event.y - 1)

    def on_focus(self) -> None:
        self.relayout()

    def on_blur(self) -> None:
        self.relayout()


# The cluster grid -------------------------------------------------------------------------
GRID_SORTS = ("name", "util", "memory", "temperature")
FIGURES_WIDTH = 20  # " 100%", " mem 100%", "  90°C" after a node's cells


def sort_nodes(nodes: Sequence[Node], key: str) -> list[Node]:
    by_name = sorted(nodes, key=lambda n: natural_key(n.name))
    if key == "name":
        return by_name
    measure: Callable[[Node], float | None] = {
        "util": node_util,
        "memory": node_memory,
        "temperature": node_temp,
    }[key]
    # Whole steps of 5 so that jitter does not reshuffle the grid every second.
    return sorted(by_name, key=lambda n: -(round((measure(n) or -5) / 5)))


@dataclass(frozen=True)
class GridData:
    snapshot: ClusterSnapshot
    mine: frozenset[str]  # locations of the user's GPUs
    selected: frozenset[str]  # locations of the selected device's GPUs
    landing: Landing | None  # where the selected (idle) device would start now
    holders: dict  # job id -> user


class ClusterGrid(LineWidget, can_focus=True):
    """Every GPU of the cluster, one cell each, nodes in a grid that fills the width.

    The richest layout that fits the room is chosen: a line per GPU (one machine), a line per
    node with its figures, nodes side by side with their names, or a dense block of nodes per
    row. The node under the cursor is shown in detail beside it."""

    BINDINGS = [
        Binding("up,k", "move(-1, 0)", show=False),
        Binding("down,j", "move(1, 0)", show=False),
        Binding("left", "move(0, -1)", show=False),
        Binding("right", "move(0, 1)", show=False),
        Binding("pageup", "move(-10, 0)", show=False),
        Binding("pagedown", "move(10, 0)", show=False),
        Binding("home", "first", show=False),
        Binding("end", "last", show=False),
    ]

    class NodeChanged(Message):
        def __init__(self, node: str | None) -> None:
            super().__init__()
            self.node = node

    class ShownChanged(Message):
        """The nodes to show GPU by GPU, or those whose readings are drawn, changed: the app
        asks the backend for them (view.detail_nodes, view.reading_nodes)."""

        def __init__(self, nodes: frozenset[str], readings: frozenset[str] | None) -> None:
            super().__init__()
            self.nodes = nodes
            self.readings = readings

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data: GridData | None = None
        self.sort = "name"
        self.nodes: list[Node] = []
        self.cursor = 0
        self.room_width = 80  # set by the app (set_room), from the screen's size
        self.budget = 20
        self.mode = "nodes"
        self.columns = 1
        self.top = 0  # first row shown
        self.node_rows: list[int] = []  # row of each node in `nodes`
        self.rows_needed = 0
        self.shown: frozenset[str] = frozenset()  # names of the nodes shown GPU by GPU
        self.readings: frozenset[str] | None = None  # ... whose readings are drawn; None: all
        self.message = "waiting for the first sample..."

    # Data --------------------------------------------------------------------------------
    def show(self, data: GridData) -> None:
        keep = self.current_node()
        self.data = data
        self.nodes = sort_nodes(data.snapshot.nodes, self.sort)
        if keep is not None:
            self.cursor = next((i for i, n in enumerate(self.nodes) if n.name == keep), 0)
        self.cursor = min(self.cursor, max(0, len(self.nodes) - 1))
        self.relayout()

    def set_sort(self, key: str) -> None:
        self.sort = key
        if self.data is not None:
            self.show(self.data)

    def set_room(self, width: int, rows: int) -> None:
        """The width the grid has and the rows it may use before it must scroll."""
        room = (max(20, width), max(3, rows))
        if room != (self.room_width, self.budget):
            self.room_width, self.budget = room
            self.relayout()

    def current_node(self) -> str | None:
        return self.nodes[self.cursor].name if self.nodes else None

    # Layout ------------------------------------------------------------------------------
    def _label_width(self) -> int:
        return min(12, max([len(n.name) for n in self.nodes] + [4]))

    def _per_node(self) -> int:
        return max([n.gpu_count for n in self.nodes] + [1])

    def _choose_mode(self, width: int) -> None:
        gpus = sum(n.gpu_count for n in self.nodes)
        per_node = self._per_node()
        label = self._label_width()
        count = len(self.nodes)
        if gpus + count <= self.budget and gpus <= 64:
            self.mode, self.columns = "gpus", 1
            return
        for mode, cell, gap in (
            ("stats", label + 1 + per_node + FIGURES_WIDTH, 3),
            ("nodes", label + 1 + per_node, 3),
        ):
            columns = max(1, (width + gap) // (cell + gap))
            if -(-count // columns) <= self.budget:
                self.mode, self.columns = mode, columns
                return
        self.mode = "dense"
        self.columns = max(1, (width - label - 1) // (per_node + 1))

    def relayout(self) -> None:
        if self.data is None or not self.nodes:
            message = self.message if self.data is None else "the backend reports no GPUs"
            self.rows_needed = 1
            self.show_lines([((message, "dim"),)])
            return
        width = self.room_width
        self._choose_mode(width)
        if self.mode == "gpus":
            self.node_rows, rows = [], []
            for node in self.nodes:
                self.node_rows.append(len(rows))
                rows.append(self._node_header(node))
                if node.summary is not None:
                    rows.append(self._summary_line(node))
                rows.extend(self._gpu_line(node, gpu, width) for gpu in node.gpus)
        else:
            self.node_rows = [i // self.columns for i in range(len(self.nodes))]
            rows = [
                self._row(self.nodes[start : start + self.columns], start, width)
                for start in range(0, len(self.nodes), self.columns)
            ]
        self.rows_needed = len(rows)
        shown = min(len(rows), self.budget)
        cursor_row = self.node_rows[self.cursor]
        if cursor_row < self.top:
            self.top = cursor_row
        elif cursor_row >= self.top + shown:
            self.top = cursor_row - shown + 1
        self.top = max(0, min(self.top, len(rows) - shown))
        self.show_lines(rows[self.top : self.top + shown])
        self._tell_shown(len(rows), shown)

    def _tell_shown(self, total_rows: int, shown_rows: int) -> None:
        """Name the nodes to fetch GPU by GPU (view.detail_nodes: those on screen, the cursor's
        always) and those whose readings are drawn (view.reading_nodes) when they change."""
        ends = self.node_rows[1:] + [total_rows]
        bottom = self.top + shown_rows
        on_screen = [
            node
            for node, first, end in zip(self.nodes, self.node_rows, ends, strict=True)
            if first < bottom and max(first + 1, end) > self.top
        ]
        cursor = self.nodes[self.cursor]
        names = detail_nodes(on_screen, cursor)
        readings = reading_nodes(on_screen, cursor, self.mode in ("gpus", "stats"), self.sort)
        if (names, readings) != (self.shown, self.readings):
            self.shown, self.readings = names, readings
            self.post_message(self.ShownChanged(names, readings))

    # Cells -------------------------------------------------------------------------------
    def _cell(self, gpu: Gpu, node: Node) -> Run:
        data = self.data
        mine = " mine" if gpu.location in data.mine else ""
        if gpu.lost or not node.up:
            return ("✕", "lost")
        if not node.accepts_work:
            return ("-", "drained")
        if data.landing is not None and gpu.location in data.landing.gpus:
            return ("○", "land")
        if is_free(gpu):
            return ("·", "free")
        if gpu.util is None:
            return ("▪", f"dim{mine}")
        return (spark(gpu.util), f"{load_class(gpu.util)}{mine}")

    def _cells(self, node: Node) -> list[Run]:
        """A cell per GPU; a node the backend only summarised (the next refresh brings its GPUs
        one by one once it is on screen) from its counts: lost, busy at its mean, free."""
        summary = node.summary
        if summary is None:
            return [self._cell(g, node) for g in node.gpus]
        if not node.up:
            return [("✕", "lost")] * summary.gpus
        working = summary.gpus - summary.lost
        cells = [("✕", "lost")] * summary.lost
        if not node.accepts_work:
            return cells + [("-", "drained")] * working
        free = min(summary.free, working)
        busy = working - free
        if summary.util is None:
            cells += [("▪", "dim")] * busy
        elif busy:
            # Free GPUs do under 5 %: the busy ones carry about all of the node's mean.
            level = min(100.0, summary.util * working / busy)
            cells += [(spark(level), load_class(level))] * busy
        landing = self.data.landing
        land = 0
        if landing is not None and node.name in landing.nodes:
            land = min(free, landing.per_node)
        return cells + [("○", "land")] * land + [("·", "free")] * (free - land)

    def _label(self, node: Node, index: int, width: int) -> Run:
        text = fit(printable(node.name), width)
        if index == self.cursor:
            return (text, "cursor" if self.has_focus else "cursor-blur")
        selected = self.data.selected
        if any(g.location in selected for g in node.gpus):
            return (text, "label-mine")
        if not node.up:
            return (text, "lost")
        return (text, "label")

    def _row(self, nodes: Sequence[Node], start: int, width: int) -> Line:
        label = self._label_width()
        runs: list[Run] = []
        if self.mode == "dense":  # the row named by its first node, as the other layouts do
            runs.append(self._label(self.nodes[start], start, label))
            runs.append((" ", ""))
            mark = "cursor-mark" if self.has_focus else "dim"
            for i, node in enumerate(nodes):
                here = start + i == self.cursor
                if here:  # the cursor node between brackets, in the gaps beside it
                    runs[-1] = ("[", mark)
                runs.extend(self._cells(node))
                runs.append(("]", mark) if here else (" ", ""))
            return merge(runs)
        for i, node in enumerate(nodes):
            if i:
                runs.append(("   ", ""))
            runs.append(self._label(self.nodes[start + i], start + i, label))
            runs.append((" ", ""))
            runs.extend(self._cells(node))
            if self.mode == "stats":
                runs.extend(self._node_figures(node))
        return merge(runs)

    def _node_figures(self, node: Node) -> list[Run]:
        if not node.up:
            return [(fit(" down", FIGURES_WIDTH), "lost")]
        if not node.accepts_work:
            return [(fit(f" {printable(node.state)}", FIGURES_WIDTH), "drained")]
        util, memory, temp = node_util(node), node_memory(node), node_temp(node)
        return [
            (f" {fmt_pct(util):>4}", load_class(util)),
            (f" mem {fmt_pct(memory):>4}", "dim"),
            (" " + ("  -  " if temp is None else f"{temp:3.0f}°C"), temp_class(temp) or "dim"),
        ]

    def _node_header(self, node: Node) -> Line:
        index = self.nodes.index(node)
        runs = [self._label(node, index, min(len(node.name), 40))]
        if not node.up:
            runs.append(("  down: not answering", "lost"))
        elif node.state:
            runs.append(
                (f"  {printable(node.state)}", "drained" if not node.accepts_work else "dim")
            )
            if node.reason:
                runs.append((f" ({printable(node.reason)})", "dim"))
        return merge(runs)

    def _summary_line(self, node: Node) -> Line:
        summary = node.summary
        util, memory, temp = node_util(node), node_memory(node), node_temp(node)
        return merge(
            [
                ("     ", ""),
                *self._cells(node),
                (f"  {plural(summary.gpus, 'GPU')}, {summary.free} free", "dim"),
                (f"  {fmt_pct(util)}", load_class(util)),
                (f"  mem {fmt_pct(memory)}", "dim"),
                ("" if temp is None else f"  {temp:.0f}°C", temp_class(temp)),
            ]
        )

    def _gpu_line(self, node: Node, gpu: Gpu, width: int) -> Line:
        runs: list[Run] = [(f"  {gpu.index:>2} ", "dim")]
        if gpu.lost or not node.up:
            runs.append(("GPU lost: not answering", "lost"))
            return merge(runs)
        bar = max(4, min(24, (width - 60) // 2))
        mem = (
            100.0 * gpu.mem_used_mib / gpu.mem_total_mib
            if gpu.mem_used_mib is not None and gpu.mem_total_mib
            else None
        )
        runs += bar_runs(gpu.util, bar)
        runs.append((f" {fmt_pct(gpu.util):>4}  ", load_class(gpu.util)))
        runs += bar_runs(mem, bar)
        memory = f" {fmt_mem(gpu.mem_used_mib)} / {fmt_mem(gpu.mem_total_mib)}"
        runs.append((fit(memory, 20), ""))
        temp = gpu.temp_c
        runs.append(("  -  " if temp is None else f"{temp:3.0f}°C", temp_class(temp)))
        runs.append((f" {fmt_power(gpu.power_w):>6}", "dim"))
        owner = self._owner(gpu)
        room = width - line_width(merge(runs)) - 2
        if owner and room > 3:
            style = "label-mine" if gpu.location in self.data.mine else ""
            runs.append(("  " + fit(owner, room).rstrip(), style))
        return merge(runs)

    def _owner(self, gpu: Gpu) -> str:
        if gpu.job_id is None:
            return "free" if is_free(gpu) else ""
        if gpu.job_id == 0:
            return HIDDEN_JOB
        user = self.data.holders.get(gpu.job_id, "")
        return printable(f"{user} · job {gpu.job_id}" if user else f"job {gpu.job_id}")

    # Keys and mouse ----------------------------------------------------------------------
    def _go(self, index: int) -> None:
        if not self.nodes:
            return
        index = max(0, min(len(self.nodes) - 1, index))
        if index != self.cursor:
            self.cursor = index
            self.relayout()
            self.post_message(self.NodeChanged(self.current_node()))

    def action_move(self, rows: int, columns: int) -> None:
        step = self.columns if self.mode != "gpus" else 1
        self._go(self.cursor + rows * step + columns)

    def action_first(self) -> None:
        self._go(0)

    def action_last(self) -> None:
        self._go(len(self.nodes) - 1)

    def on_click(self, event: events.Click) -> None:
        row = self.top + event.y
        if self.mode == "gpus":
            for index, first in enumerate(self.node_rows):
                if first <= row and (
                    index + 1 == len(self.node_rows) or row < self.node_rows[index + 1]
                ):
                    self._go(index)
            return
        label = self._label_width()
        if self.mode == "dense":
            column = max(0, (event.x - label - 1)) // (self._per_node() + 1)
        else:
            per_node = self._per_node()
            cell = label + 1 + per_node + (FIGURES_WIDTH if self.mode == "stats" else 0) + 3
            column = event.x // cell
        index = row * self.columns + min(column, self.columns - 1)
        if index < len(self.nodes):
            self._go(index)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.action_move(1, 0)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.action_move(-1, 0)

    def on_focus(self) -> None:
        self.relayout()

    def on_blur(self) -> None:
        self.relayout()


class Legend(LineWidget):
    """What the grid's marks mean, its sort, and what is out of view."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state: tuple = ()

    def show(self, sort: str, hidden_rows: int, node_line: Line, mode: str, landing: bool) -> None:
        state = (sort, hidden_rows, node_line, mode, landing)
        if state != self.state:
            self.state = state
            self.relayout()

    def relayout(self) -> None:
        if not self.state:
            self.show_lines([()])
            return
        sort, hidden, node_line, mode, landing = self.state
        parts: list[tuple[int, list[Run]]] = []
        if node_line:
            parts.append((0, list(node_line)))
        if mode != "gpus":
            parts += [
                (3, [("▁▄█", "mid"), (" util ", "dim")]),
                (4, [("·", "free"), (" free ", "dim")]),
                (5, [("▄", "mid mine"), (" yours ", "dim")]),
                (7, [("✕", "lost"), (" lost", "dim")]),
            ]
            if landing:  # the mark is on the grid only while an idle device would start
                parts.insert(-1, (6, [("○", "land"), (" would start here ", "dim")]))
        parts.append((2, [("sort: ", "dim"), (sort, "bold"), (" (s)", "dim")]))
        if hidden:
            parts.append((1, [(f"↕ {hidden} more rows", "dim")]))
        self.show_lines([fit_parts(parts, self.size.width or 80, ("  ", ""))])


# Side panel -------------------------------------------------------------------------------
class SidePanel(LineWidget):
    """The selected device's history on a fixed 0-100 % scale, the node under the grid's cursor
    GPU by GPU, and the host."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state: tuple = ()

    def show(self, *state) -> None:
        if state != self.state:
            self.state = state
            self.relayout()

    def relayout(self) -> None:
        if not self.state:
            self.show_lines([])
            return
        view, history, interval, node, holders, mine, host = self.state
        width = max(12, self.size.width or 36)
        spark_width = max(4, width - 11)
        lines: list[Line] = []
        if view is not None:
            lines.append(merge([(f"Device {view.device} · {view.flavor_name}", "bold")]))
            util = [u for u, _ in history]
            mem = [m for _, m in history]
            mem_now = mem[-1] if mem else None
            for name, values, now in (("util", util, view.utilization), ("mem ", mem, mem_now)):
                lines.append(
                    merge(
                        [
                            (f"{name} ", "dim"),
                            (sparkline(values, spark_width), load_class(now)),
                            (f" {fmt_pct(now):>4}", load_class(now)),
                        ]
                    )
                )
            span = fmt_runtime(len(history) * interval) if history else "0m"
            lines.append(merge([(f"     0-100 % scale, last {span}", "dim")]))
            lines.append(())
        if node is not None:
            lines.append(self._node_title(node, width))
            for gpu in node.gpus:
                lines.append(self._gpu(gpu, node, holders, mine, width))
            summary = node.summary
            if summary is not None:  # its GPUs one by one come with the next refresh
                counts = f"{plural(summary.gpus, 'GPU')}, {summary.free} free"
                lost = f", {summary.lost} lost" if summary.lost else ""
                memory = fmt_mem_pair(summary.mem_used_mib, summary.mem_total_mib)
                lines.append(merge([(fit(f"{counts}{lost} · mem {memory}", width), "dim")]))
            lines.append(())
        if host:
            lines.append(merge([(fit(printable(host), width), "dim")]))
        self.show_lines(lines)

    def _node_title(self, node: Node, width: int) -> Line:
        runs: list[Run] = [(fit(printable(node.name), min(width, len(node.name))), "bold")]
        if not node.up:
            runs.append((" down", "lost"))
        elif node.state:
            runs.append((f" {printable(node.state)}", "dim"))
        util = node_util(node)
        runs.append((f"  {fmt_pct(util)}", load_class(util)))
        power = node_power(node)
        if power is not None:
            runs.append((f"  {fmt_power(power)}", "dim"))
        return merge(runs)

    def _gpu(self, gpu: Gpu, node: Node, holders: dict, mine: frozenset, width: int) -> Line:
        runs: list[Run] = [(f"{gpu.index:>2} ", "dim")]
        if gpu.lost or not node.up:
            return merge(runs + [("lost", "lost")])
        runs += bar_runs(gpu.util, 6)
        runs.append((f"{fmt_pct(gpu.util):>5}", load_class(gpu.util)))
        runs.append((f" {fmt_mem(gpu.mem_used_mib):>9}", ""))
        temp = gpu.temp_c
        runs.append((" " + ("  - " if temp is None else f"{temp:3.0f}°"), temp_class(temp)))
        rest = width - line_width(merge(runs)) - 1
        if rest > 2:
            if gpu.job_id == 0:
                owner, style = "hidden", "dim"  # HIDDEN_JOB, in the room there is
            elif gpu.job_id is not None:
                owner = holders.get(gpu.job_id, "") or f"job {gpu.job_id}"
                style = "label-mine" if gpu.location in mine else "dim"
            else:
                owner, style = ("free" if is_free(gpu) else "-"), "free"
            runs.append((" " + fit(printable(owner), rest), style))
        return merge(runs)


# Jobs -------------------------------------------------------------------------------------
JOB_SORTS = ("yours first", "GPUs", "GPU%", "memory", "runtime", "user")


def sort_jobs(rows: Sequence[JobRow], key: str) -> list[JobRow]:
    if key == "yours first":
        return sorted(rows, key=lambda r: (not r.mine, r.job.waiting, -r.gpus, r.job.job_id))
    measure = {
        "GPUs": lambda r: -r.gpus,
        "GPU%": lambda r: -(r.util if r.util is not None else -1),
        "memory": lambda r: -(r.mem_used_mib or -1),
        "runtime": lambda r: -(r.runtime_s or -1),
        "user": lambda r: r.job.user,
    }[key]
    return sorted(rows, key=lambda r: (measure(r), r.job.job_id))


class JobTable(LineWidget, can_focus=True):
    """Every job on the cluster, one line each, under a header that stays; the cursor picks a
    job (`r` stops it when it is yours). Columns follow the width; the command takes the rest."""

    BINDINGS = [
        Binding("up,k", "move(-1)", show=False),
        Binding("down,j", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "move(-100000)", show=False),
        Binding("end", "move(100000)", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[JobRow] = []
        self.local = False
        self.processes: dict = {}
        self.sort = "yours first"
        self.cursor = 0
        self.top = 0
        self._cursor_key: tuple | None = None

    def show(self, rows: Sequence[JobRow], local: bool, processes: dict) -> None:
        self.rows = sort_jobs(rows, self.sort)
        self.local = local
        self.processes = processes
        if self._cursor_key is not None:  # the cursor stays on its job as rows move
            keys = [self._key(r) for r in self.rows]
            if self._cursor_key in keys:
                self.cursor = keys.index(self._cursor_key)
        self.cursor = min(self.cursor, max(0, len(self.rows) - 1))
        self.relayout()

    @staticmethod
    def _key(row: JobRow) -> tuple:
        return (row.job.job_id, row.job.pid, row.job.user)

    def set_sort(self, key: str) -> None:
        self.sort = key
        self.show(self.rows, self.local, self.processes)

    def selected(self) -> JobRow | None:
        return self.rows[self.cursor] if self.rows else None

    def row_cells(self, job_id: int) -> dict[str, str]:
        """A job's cells by column name (tests read the table through this)."""
        columns = self._columns(self.size.width or 200)
        for row in self.rows:
            if row.job.job_id == job_id:
                return {
                    name: text.strip()
                    for (name, _), (text, _) in zip(columns, self._cells(row, columns), strict=True)
                }
        raise KeyError(job_id)

    def _columns(self, width: int) -> list[tuple[str, int]]:
        columns = [("Dev", 3), ("Job ID", 7), ("PID", 8), ("User", 8), ("GPUs", 8)]
        columns += [("GPU%", 4), ("GPU Mem", 9), ("Runtime", 7)]
        if self.local:
            columns += [("CPU%", 4), ("RSS", 6)]
        if width < 100:
            columns = [c for c in columns if c[0] not in ("PID", "Runtime", "RSS")]
        used = sum(w + 1 for _, w in columns) + 1
        columns.append(("Command", max(10, width - used)))
        return columns

    def _cells(self, row: JobRow, columns: list[tuple[str, int]]) -> list[Run]:
        job = row.job
        cpu, rss = self.processes.get(job.pid, (None, None))
        gpus = "-" if not row.gpus else f"{row.gpus}" + (f"/{row.nodes}n" if row.nodes > 1 else "")
        command = printable(job.command)
        if job.waiting:
            command = f"[{row.state}] {command}"
        values = {
            "Dev": ("-" if job.device is None else str(job.device), ""),
            "Job ID": (str(job.job_id), "bold" if row.mine else ""),
            "PID": (str(job.pid) if job.pid else "-", "dim"),  # 0: no process of ours
            "User": (printable(job.user), "label-mine" if row.mine else ""),
            "GPUs": (gpus, ""),
            "GPU%": (fmt_pct(row.util), load_class(row.util)),
            "GPU Mem": (fmt_mem(row.mem_used_mib), ""),
            "Runtime": ("-" if row.runtime_s is None else fmt_runtime(row.runtime_s), "dim"),
            "CPU%": ("-" if cpu is None else f"{cpu:.0f}", ""),
            "RSS": (fmt_bytes(rss), ""),
            "Command": (command, "waiting" if job.waiting else ""),
        }
        cells = []
        for name, width in columns:
            text, style = values[name]
            right = name in ("GPU%", "CPU%", "GPUs")
            cells.append(
                (
                    (text.rjust(width) if right and cell_len(text) <= width else fit(text, width)),
                    style,
                )
            )
        return cells

    def relayout(self) -> None:
        width = self.size.width or 120
        columns = self._columns(width)
        header = merge(
            [(" ", "header")]
            + [
                (
                    (name.rjust(w) if name in ("GPU%", "CPU%", "GPUs") else fit(name, w)) + " ",
                    "header",
                )
                for name, w in columns
            ]
        )
        room = max(1, (self.size.height or 10) - 1)
        if self.cursor < self.top:
            self.top = self.cursor
        elif self.cursor >= self.top + room:
            self.top = self.cursor - room + 1
        self.top = max(0, min(self.top, max(0, len(self.rows) - room)))
        lines = [header]
        for number in range(self.top, min(len(self.rows), self.top + room)):
            row = self.rows[number]
            runs: list[Run] = [(" ", "")]
            for text, style in self._cells(row, columns):
                runs += [(text, style), (" ", "")]
            line = merge(runs)
            if number == self.cursor and self.has_focus:
                line = tuple((t, f"{s} cursor".strip()) for t, s in line)
            lines.append(line)
        if not self.rows:
            lines.append(((" no jobs on the cluster", "dim"),))
        self.show_lines(lines)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(2, len(self.rows) + 1)

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))
            self._cursor_key = self._key(self.rows[self.cursor])
            self.relayout()

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height - 2))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.action_move(self.top + event.y - 1 - self.cursor)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.action_move(3)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.action_move(-3)

    def on_focus(self) -> None:
        self.relayout()

    def on_blur(self) -> None:
        self.relayout()
