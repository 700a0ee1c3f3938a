"""The help screen, generated from the key bindings active where it was opened.

It also lists the views the catalogue offers (with their aliases) and the query operators, so
it never goes out of date.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tui.catalogue import Catalogue

KEY_NAMES = {
    "colon": ":",
    "question_mark": "?",
    "slash": "/",
    "escape": "esc",
    "space": "space",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "asterisk": "*",
}


def key_label(binding: Binding) -> str:
    if binding.key_display:
        return binding.key_display
    return KEY_NAMES.get(binding.key, binding.key)


HIDDEN_ACTIONS = ("focus_next", "focus_previous", "copy_text", "command_palette")


def bindings_table(active: dict[str, ActiveBinding]) -> Table:
    """Keys of the app and of the screen help was opened on, one line per thing they do."""
    grouped: dict[tuple[bool, str, str], list[str]] = {}
    for item in active.values():
        binding = item.binding
        if not isinstance(item.node, App | Screen) or not binding.description:
            continue
        if binding.action.split(".")[-1] in HIDDEN_ACTIONS:
            continue
        where = (
            "global"
            if isinstance(item.node, App)
            else type(item.node).__name__.replace("Screen", "")
        )
        where = {"Resource": "view", "Overview": "overview"}.get(where, where)
        keys = grouped.setdefault((where != "global", where, binding.description), [])
        label = key_label(binding)
        if label not in keys:
            keys.append(label)
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("does")
    table.add_column("where", style="dim")
    for (_local, where, does), keys in sorted(
        grouped.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[1][0])
    ):
        table.add_row(", ".join(sorted(keys, key=len)), does, where)
    table.add_row("↑ ↓ pgup pgdn", "move; past the first or last row loads the next page", "tables")
    table.add_row("g G home end", "first or last row of the page", "tables")
    return table


def views_table(catalogue: Catalogue | None) -> Table | Text:
    if catalogue is None:
        return Text("(catalogue not loaded yet)", style="dim")
    by_type: dict[str, list[str]] = {}
    for alias, type_name in catalogue.aliases.items():
        by_type.setdefault(type_name, []).append(alias)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("view", style="bold cyan", no_wrap=True)
    table.add_column("aliases", style="dim")
    table.add_column("summary")
    for info in catalogue.views():
        skip = {info.cli, info.cli + "s", info.name.lower(), info.name.lower() + "s"}
        aliases = sorted((a for a in by_type.get(info.name, []) if a not in skip), key=len)
        table.add_row(f":{info.cli}", " ".join(f":{a}" for a in aliases[:3]), info.summary)
    return table


def operators_text(catalogue: Catalogue | None) -> Text:
    out = Text("/ filters with FIELD OP VALUE conditions separated by spaces, e.g. ", style="")
    out.append("state=Disabled cluster.zone.name=z1", style="bold")
    out.append("; a bare word matches names. Tab or → accepts a suggestion.\n")
    for op in catalogue.operators if catalogue else []:
        out.append(f"  {op['op']:<7}", style="bold cyan")
        out.append(f"{op['doc']}\n")
    return out


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def __init__(self, active: dict[str, ActiveBinding], catalogue: Catalogue | None) -> None:
        super().__init__()
        self.active = active
        self.catalogue = catalogue

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("Keys", style="bold underline"))
            yield Static(bindings_table(self.active))
            yield Static(Text("\nViews (: then a name)", style="bold underline"))
            yield Static(views_table(self.catalogue))
            yield Static(Text("\nFilter", style="bold underline"))
            yield Static(operators_text(self.catalogue))
            yield Static(
                Text(
                    "Mouse: click a row to select it, a column header to sort by it, a key in the"
                    " footer to run it; the wheel scrolls.",
                    style="dim",
                )
            )

    def on_mount(self) -> None:
        box = self.query_one("#help", VerticalScroll)
        box.border_title = "help"
        box.border_subtitle = "esc closes"
        box.focus()
