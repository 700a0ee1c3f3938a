"""The most recent events, newest first, drawn from the data source's ring buffer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui.format import event_summary


class EventList(Static):
    DEFAULT_CSS = """
    EventList { height: auto; }
    """

    def show(self, events: Iterable[dict[str, Any]], limit: int = 50) -> None:
        # A job's end is published on /job/state/change and on /job/<uuid>: show it once.
        shown = (
            e
            for e in events
            if not (
                str(e.get("path", "")).startswith("/job/")
                and e.get("path") != "/job/state/change"
                and "state" in (e.get("data") or {})
            )
        )
        recent = list(shown)[-limit:][::-1]
        if not recent:
            self.update(Text("no events yet: changes made anywhere show up here", style="dim"))
            return
        self.update(Text("\n").join(event_summary(e) for e in recent))
