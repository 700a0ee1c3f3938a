"""The overview's resource list: a row per resource type with its count and health."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import DataTable

from tui.format import state_style


@dataclass
class TypeCount:
    name: str
    cli: str
    total: int | None
    health: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> value -> n
    error: str = ""


def health_text(count: TypeCount) -> Text:
    out = Text()
    if count.error:
        out.append(count.error[:40], style="red")
        return out
    for values in count.health.values():
        if out:
            out.append("  ")
        for i, (value, n) in enumerate(sorted(values.items(), key=lambda kv: -kv[1])):
            if i:
                out.append(" ")
            out.append(f"{n:,} {value}", style=state_style(value))
    return out


class CountsTable(DataTable[Text]):
    """Enter (or a click) on a row opens that resource type's view."""

    DEFAULT_CSS = """
    CountsTable { height: auto; max-height: 100%; }
    """

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        self.add_column("resource", key="resource")
        self.add_column("total", key="total")
        self.add_column("health", key="health")

    def show(self, counts: list[TypeCount]) -> None:
        keep = self.cursor_row
        self.clear()
        for c in counts:
            total = Text("?" if c.total is None else f"{c.total:,}", justify="right")
            self.add_row(Text(c.cli, style="bold"), total, health_text(c), key=c.name)
        if counts:
            self.move_cursor(row=min(keep, len(counts) - 1))
