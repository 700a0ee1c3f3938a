"""The detail pane: every field of the highlighted row, then its JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.catalogue import ResourceInfo
from tui.format import cell, human_bytes, is_bytes_field


class DetailPane(VerticalScroll):
    DEFAULT_CSS = """
    DetailPane > Static { height: auto; }
    """

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(Text("no row selected", style="dim"), id="detail-body")

    def show(
        self, info: ResourceInfo, row: dict[str, Any] | None, names: dict[str, dict[str, str]]
    ) -> None:
        body = self.query_one("#detail-body", Static)
        if row is None:
            body.update(Text("no row selected", style="dim"))
            return
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("field", style="bold cyan", no_wrap=True)
        table.add_column("value", overflow="fold")
        for name, value in row.items():
            shown = Text(str(value)) if value is not None else Text("-", style="dim")
            if isinstance(value, int) and not isinstance(value, bool) and is_bytes_field(name):
                shown.append(f"  ({human_bytes(value)})", style="dim")
            if name in ("state", "status") or info.fields.get(name, {}).get("enum"):
                shown = cell(name, value, info.fields.get(name))
            target = info.ref(name)
            if target and isinstance(value, str) and names.get(target, {}).get(value):
                shown.append(f"  ({names[target][value]})", style="dim")
            table.add_row(name, shown)
        data = json.dumps(row, indent=2, sort_keys=False, default=str)
        title = Text(f"\n{info.name} JSON", style="bold")
        body.update(Group(table, title, Syntax(data, "json", theme="ansi_dark", word_wrap=True)))
