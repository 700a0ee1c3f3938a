"""The top line of every screen: where we are, which node, and whether the data is live."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import Static

from tui.format import clock

if TYPE_CHECKING:
    from tui.app import ZtuiApp
    from tui.data import Status


class StatusHeader(Static):
    """``ztui ▸ host  vm 0.1.0 unix:/…/zmn.sock  ● live`` or ``● stale since 12:03:04 (42s)``."""

    DEFAULT_CSS = """
    StatusHeader { height: 1; background: $panel; color: $text; }
    """

    def __init__(self, crumb: str = "", **kw: Any) -> None:
        super().__init__(**kw)
        self.crumb = crumb

    @property
    def zapp(self) -> ZtuiApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.zapp.status_signal.subscribe(self, lambda _s: self.refresh_line())
        self.set_interval(1.0, self.refresh_line)
        self.refresh_line()

    def set_crumb(self, crumb: str) -> None:
        self.crumb = crumb
        self.refresh_line()

    def refresh_line(self) -> None:
        self.update(self.line(self.zapp.data.status, self.size.width or 80))

    def line(self, status: Status, width: int) -> Text:
        left = Text()
        left.append(" ztui ", style="bold reverse")
        if self.crumb:
            left.append(f" ▸ {self.crumb}", style="bold")
        right = Text()
        if self.zapp.read_only:
            right.append(" read-only ", style="reverse yellow")
            right.append(" ")
        node = status.node
        if width >= 100 and node:
            right.append(f"{node.get('name') or ''} {node.get('version') or ''} ", style="dim")
            right.append(f"{self.zapp.data.endpoint} ", style="dim")
        if status.state == "live":
            right.append("● live", style="bold green")
        else:
            now = time.time()
            retry = (
                f" retry {max(0, int((status.retry_at or now) - now))}s" if status.retry_at else ""
            )
            if status.state == "stale":
                since = status.stale_since or now
                right.append(
                    f"● stale since {clock(since)} ({int(now - since)}s){retry}", style="bold red"
                )
            else:
                right.append(f"● connecting{retry}", style="bold yellow")
        room = width - left.cell_len - right.cell_len - 3
        if status.error and not status.live and room > 20:
            error = Text(status.error, style="red")
            error.truncate(room, overflow="ellipsis")
            right = Text.assemble(error, "  ", right)
        gap = max(1, width - left.cell_len - right.cell_len - 1)
        line = Text.assemble(left, " " * gap, right)
        line.truncate(width, overflow="ellipsis")
        return line
