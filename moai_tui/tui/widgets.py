"""Dashboard widgets. Each one renders from the last sample and repaints only on change."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.message import Message
from textual.widget import Widget

from moai_tui.model import ClusterSnapshot, Gpu
from moai_tui.view import (
    DeviceView,
    bar,
    fmt_mib,
    fmt_percent,
    mean,
    sparkline,
    temperature_band,
)


def load_style(theme, percent: float | None) -> str:
    """Colour for a utilization or memory level, from the active theme."""
    if percent is None:
        return "dim"
    if percent >= 90:
        return theme.error or "red"
    if percent >= 60:
        return theme.warning or "yellow"
    if percent >= 20:
        return theme.success or "green"
    return theme.primary


def temp_style(theme, temp_c: float | None) -> str:
    band = temperature_band(temp_c)
    if band is None:
        return ""
    return {
        "caution": theme.warning or "yellow",
        "warning": f"bold {theme.error or 'red'}",
        "act": f"bold reverse {theme.error or 'red'}",
    }[band]


class TextPanel(Widget):
    """A rich Text in a box whose size the CSS fixes: `show(key, build)` repaints it only when
    `key` changed, and without a layout pass (Static.update asks for one, which repaints every
    widget on the screen, both tables included). `build(width)` runs at render time with the
    panel's own width, so the text never depends on whether a sample landed before the first
    layout."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._text = Text()
        self._key: object = None
        self._build = None
        self._built_width: int | None = None

    @property
    def content(self) -> Text:
        self._ensure_built()
        return self._text

    def show(self, key: object, build) -> None:
        if key != self._key:
            self._key = key
            self._build = build
            self._built_width = None
            self.refresh()

    def _ensure_built(self) -> None:
        width = self.size.width
        if self._build is not None and self._built_width != width:
            self._built_width = width
            self._text = self._build(width)

    def on_resize(self) -> None:
        self.refresh()

    def render(self) -> Text:
        self._ensure_built()
        return self._text


class HeaderBar(TextPanel):
    pass


class DeviceList(Widget, can_focus=True):
    """The `smi` columns for every one of the user's accelerators; the cursor picks one.

    A few lines of text, not a DataTable: a DataTable repaints its header and every cell when
    one cell changes, and this list changes every second."""

    BINDINGS = [
        Binding("up,k", "move(-1)", show=False),
        Binding("down,j", "move(1)", show=False),
        Binding("enter", "select", show=False),
    ]
    COLUMNS = (
        ("", 1),
        ("Device", 6),
        ("Model", 18),
        ("Memory Usage", 13),
        ("Total Memory", 13),
        ("Utilization", 11),
    )
    DEFAULT_CSS = "DeviceList { height: auto; }"

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
        self.rows: dict[int, tuple[str, ...]] = {}
        self.cursor = 0

    def show_views(self, views: Sequence[DeviceView]) -> None:
        rows = {
            v.device: (
                "*" if v.current else "",
                str(v.device),
                v.flavor_name,
                fmt_mib(v.memory_used_mib),
                fmt_mib(v.memory_total_mib),
                fmt_percent(v.utilization),
            )
            for v in sorted(views, key=lambda v: v.device)
        }
        if rows == self.rows:
            return
        if len(rows) != len(self.rows):
            self.styles.height = 1 + len(rows)
        self.rows = rows
        self.cursor = min(self.cursor, max(0, len(rows) - 1))
        self.refresh()

    def row_cells(self, device: int) -> tuple[str, ...]:
        return self.rows[device]

    def selected_device(self) -> int | None:
        return list(self.rows)[self.cursor] if self.rows else None

    def _line(self, cells: Sequence[str]) -> str:
        return " ".join(f" {c:<{w}}" for c, (_, w) in zip(cells, self.COLUMNS, strict=True))

    def render_line(self, y: int):
        from textual.strip import Strip

        width = self.size.width
        if y == 0:
            text = Text(self._line([h for h, _ in self.COLUMNS]), style="bold")
        elif y - 1 < len(self.rows):
            cells = list(self.rows.values())[y - 1]
            text = Text(self._line(cells))
            if y - 1 == self.cursor:
                text.stylize("reverse" if self.has_focus else "underline")
        else:
            return Strip.blank(width, self.rich_style)
        return Strip(list(text.render(self.app.console))).crop_extend(0, width, self.rich_style)

    def _move_to(self, row: int) -> None:
        if self.rows and 0 <= row < len(self.rows) and row != self.cursor:
            self.cursor = row
            self.refresh()
            self.post_message(self.Highlighted(self.selected_device()))

    def action_move(self, delta: int) -> None:
        self._move_to(max(0, min(len(self.rows) - 1, self.cursor + delta)))

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.Selected(self.selected_device()))

    def on_click(self, event) -> None:
        self._move_to(event.y - 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


class GpuScroll(VerticalScroll, can_focus=False):
    """The GPU map's scroll box: the map's layout depends on the box's height."""

    def on_resize(self) -> None:
        for gpu_map in self.query(GpuMap):
            gpu_map._rebuild()


class GpuMap(Widget, can_focus=True):
    """The accelerator's GPUs grouped by node: one line per GPU when they fit, else a heat-map
    of one cell per GPU and one line per node, with the node under the cursor in detail."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "node up", show=False),
        Binding("down,j", "move(1)", "node down", show=False),
        Binding("pageup", "move(-10)", show=False),
        Binding("pagedown", "move(10)", show=False),
    ]

    class NodeChanged(Message):
        def __init__(self, node: str | None) -> None:
            super().__init__()
            self.node = node

    DEFAULT_CSS = "GpuMap { height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodes: list[tuple[str, list[Gpu]]] = []
        self.cursor = 0
        self.compact = False
        self.message = "waiting for the first sample..."
        self._lines: list[Text] = [Text(self.message)]
        self._key: object = None

    def set_gpus(self, gpus: Sequence[Gpu], message: str) -> None:
        grouped: dict[str, list[Gpu]] = {}
        for gpu in gpus:
            grouped.setdefault(gpu.node, []).append(gpu)
        self.nodes = list(grouped.items())
        self.message = message
        self.cursor = min(self.cursor, max(0, len(self.nodes) - 1))
        self._rebuild()

    def current_node(self) -> str | None:
        return self.nodes[self.cursor][0] if self.nodes else None

    def _rebuild(self) -> None:
        theme = self.app.current_theme
        width = max(20, self.size.width or 60)
        # One line per GPU when they fit in the scroll box, as laid out now (not when the
        # sample landed: the box may not have its size yet).
        room = max(3, self.parent.size.height) if self.parent is not None else 3
        compact = sum(1 + len(gpus) for _, gpus in self.nodes) > room
        if compact != self.compact:
            self.compact = compact
            self.post_message(self.NodeChanged(self.current_node()))
        key = (
            tuple((n, tuple(gs)) for n, gs in self.nodes),
            self.message,
            self.compact,
            self.cursor,
            width,
            theme.name,
            self.has_focus,
        )
        if key == self._key:
            return
        self._key = key
        self._lines = (
            self._compact_lines(theme, width) if self.compact else self._detail_lines(theme, width)
        )
        if self.styles.height is None or self.styles.height.value != len(self._lines):
            self.styles.height = len(self._lines)  # a layout pass: only when the count changes
        self.refresh()

    def _detail_lines(self, theme, width: int) -> list[Text]:
        if not self.nodes:
            return [Text(self.message, style="dim")]
        bar_width = max(4, min(20, (width - 34) // 2))
        lines = []
        for number, (node, gpus) in enumerate(self.nodes):
            marker = "▶ " if number == self.cursor and self.has_focus else "  "
            header = Text(f"{marker}{node}", style="bold")
            if gpus and all(g.lost for g in gpus):
                header.append("  down: its exporter is not answering", style=theme.error or "red")
            lines.append(header)
            for gpu in gpus:
                lines.append(gpu_line(gpu, theme, bar_width))
        return lines

    def _compact_lines(self, theme, width: int) -> list[Text]:
        lines = []
        for number, (node, gpus) in enumerate(self.nodes):
            line = Text(
                "▶ " if number == self.cursor else "  ",
                style="bold" if number == self.cursor else "",
            )
            line.append(f"{node:<8} ", style="bold" if number == self.cursor else "")
            for gpu in gpus:
                if gpu.lost:
                    line.append("✕", style=theme.error or "red")
                else:
                    line.append(
                        sparkline([gpu.util], 1) if gpu.util else "·",
                        style=load_style(theme, gpu.util),
                    )
            if gpus and all(g.lost for g in gpus):
                line.append(" down", style=f"bold {theme.error or 'red'}")
                lines.append(line)
                continue
            util = mean([g.util for g in gpus if not g.lost])
            used = sum(g.mem_used_mib or 0 for g in gpus)
            total = sum(g.mem_total_mib or 0 for g in gpus)
            hottest = max((g.temp_c for g in gpus if g.temp_c is not None), default=None)
            line.append(f" {fmt_percent(util):>5}", style=load_style(theme, util))
            if width >= 40:
                mem = 100.0 * used / total if total else None
                line.append(f"  mem {fmt_percent(mem):>5}")
            if width >= 52 and hottest is not None:
                line.append(f"  {hottest:3.0f}°C", style=temp_style(theme, hottest))
            if number == self.cursor:
                line.stylize("reverse" if self.has_focus else "underline", 0, 2 + 9)
            lines.append(line)
        return lines or [Text(self.message, style="dim")]

    def render_line(self, y: int):
        from textual.strip import Strip

        if y >= len(self._lines):
            return Strip.blank(self.size.width)
        segments = list(self._lines[y].render(self.app.console))
        return Strip(segments).crop_extend(0, self.size.width, self.rich_style)

    def on_resize(self) -> None:
        self._rebuild()

    def on_focus(self) -> None:
        self._rebuild()

    def on_blur(self) -> None:
        self._rebuild()

    def action_move(self, delta: int) -> None:
        if not self.nodes:
            return
        self.cursor = max(0, min(len(self.nodes) - 1, self.cursor + delta))
        self._rebuild()
        y = self.cursor if self.compact else sum(1 + len(g) for _, g in self.nodes[: self.cursor])
        self.parent.scroll_to_region(Region(0, y, 1, 1), animate=False)  # the scroll box
        self.post_message(self.NodeChanged(self.current_node()))

    def on_click(self, event) -> None:
        if self.compact and 0 <= event.y < len(self.nodes):
            self.cursor = event.y
            self._rebuild()
            self.post_message(self.NodeChanged(self.current_node()))


def gpu_line(gpu: Gpu, theme, bar_width: int) -> Text:
    line = Text(f"  {gpu.index:>2} ")
    if gpu.lost:
        line.append("GPU lost: not answering", style=f"bold {theme.error or 'red'}")
        return line
    mem = (
        100.0 * gpu.mem_used_mib / gpu.mem_total_mib
        if gpu.mem_used_mib is not None and gpu.mem_total_mib
        else None
    )
    line.append("▕")
    line.append(bar(gpu.util, bar_width), style=load_style(theme, gpu.util))
    line.append("▏")
    line.append(f"{fmt_percent(gpu.util):>5} mem▕")
    line.append(bar(mem, bar_width), style=load_style(theme, mem))
    line.append(f"▏{fmt_percent(mem):>5} ")
    line.append(
        "  -  " if gpu.temp_c is None else f"{gpu.temp_c:3.0f}°C",
        style=temp_style(theme, gpu.temp_c),
    )
    return line


class SidePanel(TextPanel):
    """Accelerator history on a fixed 0-100 % scale, the node under the cursor, the host."""


def percent(value: float | None) -> int | None:
    """Whole percents: a sparkline level is 12.5 %, and small ints are shared objects in
    CPython, so a full history allocates nothing per sample."""
    return None if value is None else round(value)


class History:
    """The last few minutes of utilization and memory, per device and per node (bounded)."""

    def __init__(self, length: int = 600):
        self.length = length
        self.devices: dict[int, deque] = {}
        self.nodes: dict[str, deque] = {}

    def add(self, views: Sequence[DeviceView], snapshot: ClusterSnapshot) -> None:
        for view in views:
            track = self.devices.setdefault(view.device, deque(maxlen=self.length))
            mem = (
                100.0 * view.memory_used_mib / view.memory_total_mib
                if view.memory_used_mib is not None and view.memory_total_mib
                else None
            )
            track.append((percent(view.utilization), percent(mem)))
        for node in snapshot.nodes:
            self.nodes.setdefault(node.name, deque(maxlen=self.length)).append(
                percent(mean([g.util for g in node.gpus if not g.lost]))
            )

    def preload(self, device: int, points: Sequence[tuple[float | None, float | None]]) -> None:
        track = self.devices.setdefault(device, deque(maxlen=self.length))
        track.extend((percent(util), percent(mem)) for util, mem in points)


class JobList(Widget):
    """Jobs and processes, one line each, inside a scrolling box. Only lines whose text changed
    are repainted: a DataTable repaints every visible cell for any change."""

    COLUMNS = (
        ("Dev", 3),
        ("Job ID", 7),
        ("PID", 8),
        ("User", 8),
        ("Command", 30),
        ("GPU Mem", 12),
        ("GPU%", 4),
        ("Runtime", 7),
        ("CPU%", 4),
        ("RSS", 7),
    )
    DEFAULT_CSS = "JobList { height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: dict[str, tuple[str, ...]] = {}
        self._lines: list[Text] = [self._text([h for h, _ in self.COLUMNS], "bold")]

    def _text(self, cells: Sequence[str], style: str = "") -> Text:
        parts = []
        for cell, (_, width) in zip(cells, self.COLUMNS, strict=True):
            parts.append(f" {cell[:width]:<{width}}")
        return Text(" ".join(parts), style=style, no_wrap=True)

    def show_rows(self, rows: dict[str, tuple[str, ...]]) -> None:
        if rows == self.rows:
            return
        lines = [self._lines[0], *(self._text(cells) for cells in rows.values())]
        width = self.size.width or 200
        if len(lines) != len(self._lines):
            self.styles.height = len(lines)
            self.refresh()
        else:
            for y, (new, old) in enumerate(zip(lines, self._lines, strict=True)):
                if new.plain != old.plain:
                    self.refresh(Region(0, y, width, 1))
        self._lines = lines
        self.rows = rows

    def row_cells(self, job_id: int) -> tuple[str, ...]:
        return self.rows[str(job_id)]

    def render_line(self, y: int):
        from textual.strip import Strip

        if y >= len(self._lines):
            return Strip.blank(self.size.width, self.rich_style)
        segments = list(self._lines[y].render(self.app.console))
        return Strip(segments).crop_extend(0, self.size.width, self.rich_style)
