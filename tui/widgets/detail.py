"""The detail pane: every field of the highlighted row, then its JSON.

Nested values (a VM's ``vmNics``, a dict of tags) are rows too: a list of objects gets a row
per item (``vmNics[0]``, its fields indented under it), a list of plain values one row of
them comma-separated, and known UUIDs anywhere are followed by their names.
"""

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
            if isinstance(value, dict | list) and value:
                nested_rows(table, name, value, names)
                continue
            shown = scalar(value)
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


INDENT = "  "


def scalar(value: Any) -> Text:
    if value is None or value == [] or value == {}:
        return Text("-", style="dim")
    if isinstance(value, bool):
        return Text("true" if value else "false")
    return Text(str(value))


def with_name(shown: Text, value: Any, names: dict[str, dict[str, str]]) -> Text:
    if isinstance(value, str):
        known = next((n[value] for n in names.values() if n.get(value)), None)
        if known:
            shown.append(f"  ({known})", style="dim")
    return shown


def nested_rows(
    table: Table, label: str, value: Any, names: dict[str, dict[str, str]], depth: int = 0
) -> None:
    """Rows for a nested value under ``label``, indented by ``depth``."""
    pad = INDENT * depth
    if isinstance(value, dict):
        title = value.get("name") or value.get("ip") or value.get("uuid")
        summary = Text(str(title)) if title else Text(f"{len(value)} fields", style="dim")
        table.add_row(pad + label, summary)
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                nested_rows(table, key, item, names, depth + 1)
            else:
                table.add_row(pad + INDENT + key, with_name(scalar(item), item, names))
        return
    if all(not isinstance(item, dict | list) for item in value):
        shown = Text(", ".join(str(item) for item in value))
        if len(value) == 1:
            with_name(shown, value[0], names)
        table.add_row(pad + label, shown)
        return
    count = f"{len(value)} item" + ("s" if len(value) != 1 else "")
    table.add_row(pad + label, Text(count, style="dim"))
    for i, item in enumerate(value):
        if isinstance(item, dict | list) and item:
            nested_rows(table, f"[{i}]", item, names, depth + 1)
        else:
            table.add_row(f"{pad}{INDENT}[{i}]", with_name(scalar(item), item, names))
