"""A small modal list to pick one thing: an action, a sort field, a related view."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option


class Picker(ModalScreen[Any]):
    """Dismisses with the value of the chosen item, or None on Escape."""

    CSS_PATH = "picker.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(
        self, title: str, items: list[tuple[Text | str, Any]], *, subtitle: str = ""
    ) -> None:
        super().__init__()
        self.title_text = title
        self.subtitle = subtitle
        self.items = items

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield OptionList(
                *[Option(label, id=str(i)) for i, (label, _v) in enumerate(self.items)]
            )

    def on_mount(self) -> None:
        box = self.query_one("#picker", Vertical)
        box.border_title = self.title_text
        box.border_subtitle = self.subtitle
        options = self.query_one(OptionList)
        if options.option_count:
            options.highlighted = 0
        options.focus()

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.items[int(event.option.id or 0)][1])
