"""Jobs in progress (``/job/*`` events) with a progress bar each; recent ends kept a while."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui.format import bar, state_style, with_names


class JobList(Static):
    DEFAULT_CSS = """
    JobList { height: auto; }
    """

    def show(self, jobs: list[dict[str, Any]], limit: int = 8) -> None:
        if not jobs:
            self.update(Text("no jobs running", style="dim"))
            return
        width = self.size.width or 80
        lines = []
        for job in jobs[:limit]:
            line = Text()
            line.append(f"{str(job.get('name') or job['uuid'][:8])[:24]:<24} ", style="bold")
            if job["state"] == "Running":
                line.append_text(
                    bar(float(job.get("progress") or 0), 100.0, max(5, min(20, width - 50)))
                )
            else:
                line.append(job["state"], style=state_style(job["state"]))
            detail = job.get("text") or (job.get("error") or {}).get("message", "")
            names = getattr(getattr(self.app, "data", None), "names", None) or {}
            detail = with_names(str(detail), names)  # resources by name, not UUID
            if detail:
                line.append(f" {detail}", style="dim")
            line.truncate(width)
            lines.append(line)
        self.update(Text("\n").join(lines))
