"""The confirmation every action passes through: what will run, on which rows."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only on the confirm button or ``y``; Cancel has the focus."""

    CSS_PATH = "confirm.tcss"
    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "Cancel"),
        Binding("y", "dismiss(True)", "Confirm"),
        Binding("left,right", "app.focus_next", "Switch", show=False),
    ]

    def __init__(
        self, title: str, body: str, *, confirm_label: str = "Run", dangerous: bool = False
    ) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label
        self.dangerous = dangerous

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(Text(self.body), id="confirm-body")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel (n)", id="cancel")
                yield Button(
                    f"{self.confirm_label} (y)",
                    id="ok",
                    variant="error" if self.dangerous else "primary",
                )

    def on_mount(self) -> None:
        self.query_one("#confirm", Vertical).border_title = self.title_text
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "ok")
