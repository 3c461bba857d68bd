"""Modal screens: the flavor picker, help, and a yes/no confirmation. No text from outside (a
flavor name, a command) is ever parsed as markup: everything is built as Text or Content."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from moai_tui.catalog import Catalog
from moai_tui.model import ClusterSnapshot, Flavor
from moai_tui.parsing import is_number
from moai_tui.text.safe import printable
from moai_tui.view import fits_now, fmt_mem, plural, unavailable_reason

DIGIT_WINDOW_S = 0.8  # "1" then "3" within this time selects 13, as typed in the old prompt


class FlavorList(OptionList):
    """A click highlights; a double click chooses (OptionList alone chooses on one click)."""

    COMPONENT_CLASSES = {"fits", "waits", "unavailable"}

    def on_click(self, event: events.Click) -> None:
        # Runs before OptionList's own click handler, which chooses on the first click.
        event.prevent_default()
        clicked = event.style.meta.get("option")
        if clicked is None or self.get_option_at_index(clicked).disabled:
            return
        self.highlighted = clicked
        if event.chain >= 2:
            self.action_select()


def flavor_row(
    number: int,
    flavor: Flavor,
    current: str,
    snapshot: ClusterSnapshot | None,
    name_width: int,
    styles: FlavorList | None = None,
) -> Text:
    mark = "*" if flavor.name == current else " "
    row = Text(
        f"{number:>3}. {mark} {flavor.name:<{name_width}} {plural(flavor.gpus, 'GPU'):>8} "
        f"{plural(flavor.nodes, 'node'):>8} {fmt_mem(flavor.total_mib):>10}  "
    )
    if snapshot is None:
        return row

    def style(name: str):
        return styles.get_component_rich_style(name, partial=True) if styles else ""

    reason = unavailable_reason(flavor, snapshot)
    if reason:
        row.append(f"not available here: {reason}", style=style("unavailable"))
    elif fits_now(flavor, snapshot):
        row.append("fits now", style=style("fits"))
    else:
        row.append("would wait", style=style("waits"))
    return row


class FlavorPicker(ModalScreen[str | None]):
    """Pick a flavor with the keyboard or the mouse; dismisses with the name, or None."""

    AUTO_FOCUS = "FlavorList"
    BINDINGS = [
        Binding("escape", "close", "close"),
        Binding("enter", "choose", "switch", show=True),
    ]

    def __init__(
        self,
        catalog: Catalog,
        current: str,
        snapshot: ClusterSnapshot | None,
        device: int = 0,
        clock=time.monotonic,
        busy: tuple[int, str] | None = None,  # (job id, command) of the job holding it
    ):
        super().__init__()
        self.catalog = catalog
        self.current = current
        self.snapshot = snapshot
        self.device = device
        self.clock = clock
        self.busy = busy
        self.filter = ""
        self._digits = ""
        self._digit_at = 0.0
        self._width = max(len(f.name) for f in catalog.flavors)

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static(self._title(), id="title")
            if self.busy is not None:
                yield Static(self._busy_line(), id="busy")
            yield FlavorList(id="flavors")
            yield Static(self._hint(), id="filter")

    def _title(self) -> Content:
        return Content(f"Device {self.device}: choose a flavor (now {self.current})")

    def _busy_line(self) -> Content:
        job_id, command = self.busy
        return Content(
            f"Device {self.device} is busy: job {job_id} holds it ({printable(command)}). "
            "Stop it first (r in the dashboard, moai-tui smi -r) to switch."
        )

    def _visible(self) -> list[tuple[int, Flavor]]:
        return [
            (n, f)
            for n, f in enumerate(self.catalog.flavors, start=1)
            if self.filter.lower() in f.name.lower()
        ]

    def _options(self, styles: FlavorList) -> list[Option]:
        return [
            Option(flavor_row(n, f, self.current, self.snapshot, self._width, styles), id=f.name)
            for n, f in self._visible()
        ]

    def _hint(self) -> Content:
        if self.filter and not self._visible():
            return Content(f"no flavor matches {self.filter!r}  (backspace edits, esc clears)")
        if self.filter:
            return Content(f"filter: {self.filter}▏  (backspace edits, esc clears)")
        return Content(
            "↑↓ j k PgUp PgDn Home End  digits jump  letters filter\nenter switches  esc/q closes"
        )

    def on_mount(self) -> None:
        options = self.query_one(FlavorList)
        options.add_options(self._options(options))
        self._focus_flavor(self.current)

    def _focus_flavor(self, name: str) -> None:
        options = self.query_one(FlavorList)
        for index in range(options.option_count):
            if options.get_option_at_index(index).id == name:
                options.highlighted = index
                return
        if options.option_count:
            options.highlighted = 0

    def _refilter(self) -> None:
        options = self.query_one(FlavorList)
        options.clear_options()
        options.add_options(self._options(options))
        options.set_class(not options.option_count, "empty")
        self.query_one("#filter", Static).update(self._hint())
        self._focus_flavor(self.current)

    def on_key(self, event: events.Key) -> None:
        key = event.character or ""
        options = self.query_one(FlavorList)
        if is_number(key) and not self.filter:
            event.stop()
            now = self.clock()
            self._digits = (self._digits if now - self._digit_at <= DIGIT_WINDOW_S else "") + key
            self._digit_at = now
            number = int(self._digits)
            if not 1 <= number <= len(self.catalog.flavors):
                self._digits, number = key, int(key)
            if 1 <= number <= len(self.catalog.flavors):
                self._focus_flavor(self.catalog.flavors[number - 1].name)
            return
        if not self.filter and key in ("j", "k", "q"):
            event.stop()
            if key == "q":
                self.dismiss(None)
            else:
                options.action_cursor_down() if key == "j" else options.action_cursor_up()
            return
        if event.key == "backspace" and self.filter:
            event.stop()
            self.filter = self.filter[:-1]
            self._refilter()
            return
        if key and (key.isalnum() or key in "._-") and len(key) == 1:
            event.stop()
            self.filter += key
            self._refilter()

    def action_close(self) -> None:
        if self.filter:
            self.filter = ""
            self._refilter()
        else:
            self.dismiss(None)

    def action_choose(self) -> None:
        options = self.query_one(FlavorList)
        if options.highlighted is not None:
            self.dismiss(options.get_option_at_index(options.highlighted).id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)


class HelpScreen(ModalScreen[None]):
    AUTO_FOCUS = "*"
    BINDINGS = [Binding("escape,q,question_mark,h,f1", "dismiss", "close")]

    def __init__(self, keys: Sequence[tuple[str, str]]):
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        text = Text("moai-tui keys\n\n", style="bold")
        width = max(len(key) for key, _ in self.keys)
        for key, what in self.keys:
            text.append(f"{key:>{width}}", style="bold")
            text.append(f"  {what}\n")
        text.append(
            "\nFlavor picker: ↑↓ j k PgUp PgDn Home End, digits jump (1 then 3 = 13),\n"
            "letters filter, enter or double-click switches, esc/q closes.\n"
            "GPU grid: arrows move between nodes; the node under the cursor is shown in detail.\n"
            "Marks: ▁▄█ utilization of a GPU someone holds, · free, ○ where the selected\n"
            "device's flavor would start now, ✕ lost or down; your GPUs are underlined.\n"
            "* is the current device: new jobs, switch and smi -r act on it.\n\n"
            "esc closes"
        )
        yield Static(text, id="help")


class ConfirmScreen(ModalScreen[bool]):
    AUTO_FOCUS = "*"
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: Text):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        text = self.question.copy()
        text.append("\n\n")
        text.append("y", style="bold")
        text.append(" yes   ")
        text.append("n", style="bold")
        text.append(" no")
        yield Static(text, id="confirm")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
