"""Modal screens: the flavor picker, help, and a yes/no confirmation."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from moai_tui.catalog import Catalog
from moai_tui.model import ClusterSnapshot, Flavor
from moai_tui.parsing import is_number
from moai_tui.view import fits_now, unavailable_reason

DIGIT_WINDOW_S = 0.8  # "1" then "3" within this time selects 13, as typed in the old prompt


class FlavorList(OptionList):
    """A click highlights; a double click chooses (OptionList alone chooses on one click)."""

    async def _on_click(self, event: events.Click) -> None:
        event.prevent_default()  # OptionList's own handler would choose on the first click
        clicked = event.style.meta.get("option")
        if clicked is None or self._options[clicked].disabled:
            return
        self.highlighted = clicked
        if event.chain >= 2:
            self.action_select()


def flavor_row(
    number: int, flavor: Flavor, current: str, snapshot: ClusterSnapshot | None, name_width: int
) -> Text:
    mark = "*" if flavor.name == current else " "
    row = Text(
        f"{number:>3}. {mark} {flavor.name:<{name_width}} {flavor.gpus:>4} GPUs "
        f"{flavor.nodes:>3} nodes {flavor.total_mib:>9} MiB  "
    )
    if snapshot is None:
        return row
    reason = unavailable_reason(flavor, snapshot)
    if reason:
        row.append(f"not available here: {reason}", style="dim")
    elif fits_now(flavor, snapshot):
        row.append("fits now", style="green")
    else:
        row.append("would wait", style="yellow")
    return row


class FlavorPicker(ModalScreen[str | None]):
    """Pick a flavor with the keyboard or the mouse; dismisses with the name, or None."""

    BINDINGS = [
        Binding("escape", "close", "close"),
        Binding("enter", "choose", "switch", show=True),
    ]
    DEFAULT_CSS = """
    FlavorPicker { align: center middle; background: $background; }
    FlavorPicker > Vertical {
        width: auto; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    FlavorPicker #title { text-style: bold; }
    FlavorPicker #filter { color: $text-muted; }
    FlavorPicker OptionList { height: auto; max-height: 24; width: auto; border: none; }
    """

    def __init__(
        self,
        catalog: Catalog,
        current: str,
        snapshot: ClusterSnapshot | None,
        device: int = 0,
        clock=time.monotonic,
    ):
        super().__init__()
        self.catalog = catalog
        self.current = current
        self.snapshot = snapshot
        self.device = device
        self.clock = clock
        self.filter = ""
        self._digits = ""
        self._digit_at = 0.0
        self._width = max(len(f.name) for f in catalog.flavors)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Device {self.device}: choose a flavor (now {self.current})", id="title")
            yield FlavorList(*self._options(), id="flavors")
            yield Static(self._hint(), id="filter")

    def _visible(self) -> list[tuple[int, Flavor]]:
        return [
            (n, f)
            for n, f in enumerate(self.catalog.flavors, start=1)
            if self.filter.lower() in f.name.lower()
        ]

    def _options(self) -> list[Option]:
        return [
            Option(flavor_row(n, f, self.current, self.snapshot, self._width), id=f.name)
            for n, f in self._visible()
        ]

    def _hint(self) -> str:
        if self.filter:
            return f"filter: {self.filter}▏  (backspace edits, esc clears)"
        return (
            "↑↓ j k PgUp PgDn Home End · digits jump · letters filter · enter switch · esc/q close"
        )

    def on_mount(self) -> None:
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
        options.add_options(self._options())
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
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: auto; height: auto; border: thick $primary;
                          background: $surface; padding: 0 2; }
    """

    def __init__(self, keys: Sequence[tuple[str, str]]):
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        lines = ["[b]moai-tui keys[/b]", ""]
        lines += [f"[b]{key:>10}[/b]  {what}" for key, what in self.keys]
        lines += [
            "",
            "Flavor picker: ↑↓ j k PgUp PgDn Home End, digits jump (1 then 3 = 13),",
            "letters filter, enter or double-click switches, esc/q closes.",
            "GPU map (tab to focus): ↑↓ moves between nodes.",
            "",
            "esc closes",
        ]
        yield Static("\n".join(lines))


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Static { width: auto; height: auto; border: thick $warning;
                             background: $surface; padding: 1 2; }
    """

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(f"{self.question}\n\n[b]y[/b] yes   [b]n[/b] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
