"""The ``:`` command bar: jump to a resource view by its CLI name or a short alias.

Suggestions come from the saved views (``:running-vms-on-pub``, the built-in ``:mn``), the
catalogue's aliases (``:zone``, ``:host``, ``:l3``, ``:vm``...), and the dashboard's own
commands (``:overview``, ``:help``, ``:quit``). A saved view's name wins over an alias, so a
view saved as ``vm`` becomes what ``:vm`` opens. ``ctrl+d`` deletes the highlighted saved view.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from tui.catalogue import Catalogue
from tui.views import View, ViewStore

COMMANDS = {
    "overview": "counts, capacity, node statistics, events and jobs",
    "help": "key bindings, views and the query language",
    "quit": "leave ztui",
}
COMMAND_ALIASES = {"pulse": "overview", "o": "overview", "q": "quit", "q!": "quit", "h": "help"}
VIEW = "view:"  # prefix of the command that opens a saved view


class CommandBar(ModalScreen[str | None]):
    """Returns the chosen command: a resource type name, ``view:<key>``, ``overview``,
    ``help`` or ``quit``."""

    CSS_PATH = "palette.tcss"
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
        Binding("tab", "complete", "Complete", show=False),
        Binding("ctrl+d", "delete_view", "Delete view", priority=True),
    ]

    def __init__(self, catalogue: Catalogue | None, store: ViewStore | None = None) -> None:
        super().__init__()
        self.catalogue = catalogue
        self.store = store
        self.views: list[View] = store.all() if store is not None else []
        # What was typed between ``:`` and this screen coming up (the app collects it).
        self.early_text = ""
        self.early_submit = False

    def feed(self, key: str, character: str | None) -> bool:
        """Take a key that missed the input (typed before it had the focus)."""
        if key == "enter":
            if self.is_mounted:
                field = self.query_one(Input)
                self.submitted(Input.Submitted(field, field.value))
            else:
                self.early_submit = True
            return True
        if not character or not character.isprintable():
            return False
        if self.is_mounted:
            field = self.query_one(Input)
            field.insert_text_at_cursor(character)
        else:
            self.early_text += character
        return True

    def compose(self) -> ComposeResult:
        with Vertical(id="palette"):
            yield Input(placeholder=":zone  :host  :l3  :vm  :overview  :help", id="palette-input")
            yield OptionList(id="palette-options")

    def on_mount(self) -> None:
        self.query_one("#palette", Vertical).border_title = "go to"
        field = self.query_one(Input)
        field.value = self.early_text
        field.cursor_position = len(self.early_text)
        self.fill(self.early_text)
        field.focus()
        if self.early_submit:
            self.call_after_refresh(self.submitted, Input.Submitted(field, field.value))

    def matches(self, text: str) -> list[tuple[str, str, str]]:
        """(what to type, command, description) best first."""
        key = text.strip().lstrip(":").lower()
        out: list[tuple[str, str, str]] = []
        known = self.catalogue.resources if self.catalogue is not None else {}
        for view in self.views:
            if view.type in known and (key in view.key or key in view.name.lower()):
                kind = "view" if view.builtin else "saved view"
                out.append((view.key, VIEW + view.key, f"{kind} — {view.describe()}"))
        if self.catalogue is not None:
            for alias, type_name in self.catalogue.suggestions(key):
                info = self.catalogue.resources[type_name]
                out.append((alias, type_name, f"{type_name} — {info.summary}"))
        for name, doc in COMMANDS.items():
            if key in name:
                out.append((name, name, doc))
        return out

    def fill(self, text: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        for typed, command, doc in self.matches(text)[:30]:
            label = Text.assemble((f":{typed}", "bold"), "  ", (doc, "dim"))
            label.no_wrap, label.overflow = True, "ellipsis"
            options.add_option(Option(label, id=f"{typed}|{command}"))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed)
    def changed(self, event: Input.Changed) -> None:
        self.fill(event.value)

    def resolve(self, text: str) -> str | None:
        key = text.strip().lstrip(":").strip().lower()
        if not key:
            return None
        key = COMMAND_ALIASES.get(key, key)
        if key in COMMANDS:
            return key
        known = self.catalogue.resources if self.catalogue is not None else {}
        view = next((v for v in self.views if v.key == key.lstrip("@")), None)
        if view is not None and view.type in known:
            return VIEW + view.key
        return self.catalogue.resolve(key) if self.catalogue else None

    def highlighted(self) -> str | None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not options.option_count:
            return None
        option_id = options.get_option_at_index(options.highlighted).id or ""
        return option_id.partition("|")[2] or None

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        exact = self.resolve(event.value)
        choice = exact or self.highlighted()
        if choice is None:
            self.notify(
                markup=False,
                message=f"no view or command {event.value.strip()!r}; try :help",
                severity="warning",
            )
            return
        self.dismiss(choice)

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss((event.option.id or "").partition("|")[2] or None)

    def action_move(self, delta: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            current = options.highlighted or 0
            options.highlighted = max(0, min(options.option_count - 1, current + delta))

    def action_delete_view(self) -> None:
        chosen = self.highlighted() or ""
        if not chosen.startswith(VIEW) or self.store is None:
            return
        key = chosen[len(VIEW) :]
        view = next((v for v in self.views if v.key == key), None)
        if view is None or view.builtin:
            self.notify(markup=False, message=f":{key} is built in", severity="warning")
            return
        try:
            self.store.delete(key)
        except OSError as exc:
            self.notify(markup=False, message=f"cannot delete: {exc}", severity="error")
            return
        self.views = self.store.all()
        self.notify(markup=False, message=f"deleted view :{key}")
        self.fill(self.query_one(Input).value)

    def action_complete(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None and options.option_count:
            typed = (options.get_option_at_index(options.highlighted).id or "").partition("|")[0]
            field = self.query_one(Input)
            field.value = typed
            field.cursor_position = len(typed)
