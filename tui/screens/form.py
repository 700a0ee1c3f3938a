"""The parameter form of an action that needs more than a confirmation (``migrate…``).

One field per parameter the catalogue lists: a choice of candidates for a reference
(``hostUuid``: the hosts a VM can move to), a choice for an enum, a switch for a bool, a
line for the rest. ``Enter`` on the last field or the Next button returns the values; the
confirmation comes after, showing the exact call.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, Switch

from tui.catalogue import Action, Param

Choices = dict[str, list[tuple[str, str]]]  # param -> (label, value)


class FormScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with {param: value} for the fields filled in, or None on Escape/Cancel."""

    CSS_PATH = "form.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, action: Action, who: str, choices: Choices | None = None) -> None:
        super().__init__()
        self.action = action
        self.who = who
        self.choices = choices or {}

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Static(
                Text.assemble((self.action.api, "bold"), f" on {self.who}"), id="form-what"
            )
            with VerticalScroll(id="form-fields"):
                for p in self.action.params:
                    label = Text.assemble((p.name, "bold"), (" *" if p.required else "", "red"))
                    if p.doc:
                        label.append(f"  {p.doc}", style="dim")
                    yield Label(label)
                    yield self.field(p)
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Next", id="next", variant="primary")

    def field(self, p: Param) -> Select[str] | Switch | Input:
        wid = f"p-{p.name}"
        if p.resource is not None or p.enum:
            options = self.choices.get(p.name) or [(v, v) for v in p.enum]
            return Select(
                options,
                prompt="(default)" if not p.required else "choose…",
                allow_blank=True,
                id=wid,
            )
        if p.type == "bool":
            return Switch(value=False, id=wid)
        return Input(placeholder=p.doc, type="integer" if p.type == "int" else "text", id=wid)

    def on_mount(self) -> None:
        self.query_one("#form", Vertical).border_title = self.action.label
        first = self.query("#form-fields Select, #form-fields Input, #form-fields Switch").first()
        first.focus()

    def values(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for p in self.action.params:
            widget = self.query_one(f"#p-{p.name}")
            value: Any
            if isinstance(widget, Select):
                value = None if widget.is_blank() else widget.value
            elif isinstance(widget, Switch):
                value = widget.value if widget.value else None
            elif isinstance(widget, Input):
                text = widget.value.strip()
                value = (int(text) if p.type == "int" else text) if text else None
            else:
                continue
            if value is None:
                if p.required:
                    self.query_one("#form-error", Static).update(
                        Text(f"{p.name} is required", style="bold red")
                    )
                    widget.focus()
                    return None
                continue
            out[p.name] = value
        return out

    @on(Input.Submitted)
    def submitted(self) -> None:
        self.next()

    @on(Button.Pressed, "#next")
    def next(self) -> None:
        values = self.values()
        if values is not None:
            self.dismiss(values)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)
