"""Management-node statistics with sparklines, fed by the app's 1.5 s poll.

The metrics flow into as many columns as the panel's width allows, so the panel is seven
lines in a side column and four when it spans an 80-column terminal; ``compact`` (a short
terminal) drops the sparklines for two lines at 80 columns.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.data import StatsHistory
from tui.format import sparkline

ROWS = (
    ("apiRatePerSecond", "api/s", "{:.1f}"),
    ("p50ms", "p50 ms", "{:.1f}"),
    ("p95ms", "p95 ms", "{:.1f}"),
    ("p99ms", "p99 ms", "{:.1f}"),
    ("apiInFlight", "in flight", "{:.0f}"),
    ("jobsInFlight", "jobs", "{:.0f}"),
    ("queueDepth", "queued", "{:.0f}"),
)
COLUMN = 36
COMPACT_COLUMN = 19  # label and value, no sparkline


class StatsPanel(Static):
    DEFAULT_CSS = """
    StatsPanel { height: auto; }
    """

    compact = False

    def show(self, history: StatsHistory) -> None:
        if not history.last:
            self.update(Text("waiting for statistics…", style="dim"))
            return
        width = self.size.width or COLUMN
        per_line = max(1, width // (COMPACT_COLUMN if self.compact else COLUMN))
        spark_width = max(4, width // per_line - 20)
        table = Table(box=None, show_header=False, pad_edge=False, expand=False)
        for _ in range(per_line):
            table.add_column("metric", width=10, no_wrap=True, style="bold")
            table.add_column("value", width=7, justify="right", no_wrap=True)
            if not self.compact:
                table.add_column("trend", width=spark_width + 1, no_wrap=True, style="cyan")
        cells: list[str] = []
        for key, label, fmt in ROWS:
            value = history.last.get(key)
            shown = fmt.format(value) if isinstance(value, int | float) else "-"
            cells += [label, shown]
            if not self.compact:
                cells.append(" " + sparkline(list(history.series.get(key, [])), spark_width))
        step = (2 if self.compact else 3) * per_line
        for i in range(0, len(cells), step):
            chunk = cells[i : i + step]
            table.add_row(*chunk, *[""] * (step - len(chunk)))
        self.update(table)

    def on_resize(self) -> None:
        app = self.app
        data = getattr(app, "data", None)
        if data is not None:
            self.show(data.stats)
