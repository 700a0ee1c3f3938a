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
from textual.widgets import Sparkline, Static

from tui.catalogue import ResourceInfo
from tui.format import cell, human_bytes, is_bytes_field


class DetailPane(VerticalScroll):
    DEFAULT_CSS = """
    DetailPane > Static { height: auto; }
    DetailPane > #usage-label { display: none; }
    DetailPane > Sparkline { display: none; height: 2; margin-bottom: 1; }
    DetailPane.-usage > #usage-label { display: block; }
    DetailPane.-usage > Sparkline { display: block; }
    """

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="usage-label")
        yield Sparkline([], id="usage-spark")
        yield Static(Text("no row selected", style="dim"), id="detail-body")

    def show_usage(self, usage: dict[str, Any] | None) -> None:
        """Recent CPU of the row (a metrics answer: its window's samples) as a sparkline;
        hidden for rows without usage."""
        self.set_class(usage is not None, "-usage")
        if usage is None:
            return
        cpu = [float(s["cpuPercent"]) for s in usage.get("samples") or [] if "cpuPercent" in s]
        self.query_one("#usage-spark", Sparkline).data = cpu
        label = Text("cpu% ", style="bold cyan")
        latest = usage.get("latest") or {}
        if cpu:
            label.append(f"{cpu[-1]:.1f} now", style="bold")
            label.append(f" · max {max(cpu):.1f} · last {len(cpu)} samples", style="dim")
        else:
            label.append("no samples yet", style="dim")
        if isinstance(latest.get("memoryUsed"), int | float):
            label.append("\nmemory ", style="bold cyan")
            label.append(human_bytes(latest["memoryUsed"]))
            if latest.get("memoryTotal"):
                label.append(f" of {human_bytes(latest['memoryTotal'])}", style="dim")
        if isinstance(latest.get("load1"), int | float):
            label.append("\nload ", style="bold cyan")
            label.append(" ".join(f"{latest.get(k, 0):g}" for k in ("load1", "load5", "load15")))
        self.query_one("#usage-label", Static).update(label)

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
