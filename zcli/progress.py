"""Progress of long operations, on stderr so that stdout stays data only.

On a terminal one line is rewritten in place; otherwise each change is a plain line, so logs
of scripted runs still show how far a job got.
"""

from __future__ import annotations

from typing import Any, TextIO

FINAL_STATES = ("Succeeded", "Failed", "Interrupted")


class Progress:
    """The client's event callback: follows ``/job/<uuid>`` events of the current request."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.job: str | None = None
        self._last = ""
        self._active = False

    def __call__(self, frame: dict[str, Any]) -> None:
        path = str(frame.get("path") or "")
        data = frame.get("data") or {}
        if not path.startswith("/job/") or not isinstance(data, dict):
            return
        self.job = str(data.get("jobUuid") or self.job or "") or None
        if data.get("state") in FINAL_STATES or "progress" not in data:
            return
        text = data.get("text") or ""
        line = f"{data.get('name') or 'job'}: {data.get('progress')}%" + (
            f" {text}" if text else ""
        )
        if line == self._last:
            return
        self._last = line
        if self.tty:
            self.err.write("\r\x1b[K" + line)
            self._active = True
        else:
            self.err.write(line + "\n")
        self.err.flush()

    def done(self) -> None:
        """End the rewriting line (if any) and forget the job."""
        if self._active:
            self.err.write("\r\x1b[K")
            self.err.flush()
        self._active = False
        self._last = ""
        self.job = None
