"""Capacity bars per zone and per cluster, from the catalogue's capacity field pairs.

Each cell names its metric (``cpu ████░░ 40% 12/32``) so that cells can wrap onto more lines
when the terminal is narrow instead of squeezing the bars to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.catalogue import Metric
from tui.format import bar, human_bytes, human_count

CELL = 31  # label + bar + percent + amounts, at the least


@dataclass
class CapacityRow:
    label: str
    depth: int
    # metric label -> (used, total)
    values: dict[str, tuple[float, float]] = field(default_factory=dict)


def amount(value: float, unit: str) -> str:
    return human_bytes(value) if unit == "bytes" else human_count(value)


class CapacityPanel(Static):
    """Container name, then one labelled bar per metric (``cpu``, ``memory``, ``primary``)."""

    DEFAULT_CSS = """
    CapacityPanel { height: auto; }
    """

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.metrics: list[Metric] = []
        self.rows: list[CapacityRow] = []

    def show(self, metrics: list[Metric], rows: list[CapacityRow]) -> None:
        self.metrics, self.rows = metrics, rows
        self.update(self.render_table())

    def on_resize(self) -> None:
        if self.metrics:
            self.update(self.render_table())

    def render_table(self) -> Table | Text:
        labels = list(dict.fromkeys(m.label for m in self.metrics))
        if not labels:
            return Text("no resource type reports capacity", style="dim")
        labels = [label for label in labels if any(label in r.values for r in self.rows)]
        if not self.rows or not labels:
            return Text("no zones or clusters with capacity yet", style="dim")
        width = self.size.width or 80
        name_width = 12 if width < 120 else 20
        per_line = max(1, min(len(labels), (width - name_width) // CELL))
        cell_width = (width - name_width) // per_line - 1
        label_width = max(len(label) for label in labels) + 1
        bar_width = max(4, min(30, cell_width - label_width - 5 - 15))
        units = {m.label: m.unit for m in self.metrics}
        table = Table(box=None, show_header=False, pad_edge=False, expand=False)
        table.add_column("", width=name_width, no_wrap=True, overflow="ellipsis")
        for _ in range(per_line):
            table.add_column("", width=cell_width, no_wrap=True, overflow="ellipsis")
        for row in self.rows:
            cells: list[Text] = []
            for label in labels:
                cell = Text(f"{label:<{label_width}}", style="bold")
                if label in row.values:
                    used, total = row.values[label]
                    cell.append_text(bar(used, total, bar_width))
                    cell.append(
                        f" {amount(used, units[label])}/{amount(total, units[label])}", style="dim"
                    )
                else:
                    cell.append("-", style="dim")
                cells.append(cell)
            name = Text("  " * row.depth + row.label, style="bold" if row.depth == 0 else "")
            for i in range(0, len(cells), per_line):
                chunk = cells[i : i + per_line]
                table.add_row(
                    name if i == 0 else Text(""), *chunk, *[Text("")] * (per_line - len(chunk))
                )
        return table
