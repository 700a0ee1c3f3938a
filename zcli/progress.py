"""Progress of long operations, on stderr so that stdout stays data only.

On a terminal one line is rewritten in place: a spinner (turning while a step waits, from a
small thread), the API, the step (``3/7 allocate-host``), the percentage and the elapsed
time. Otherwise each change is a plain line (``StartVm: 50% boot``), so logs of scripted
runs still show how far a job got. When the wait ends early (Ctrl-C, ``--timeout``)
:func:`follow_hint` tells how to follow the job that goes on.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # typing costs a few ms of every cold zcli
    from typing import Any, TextIO

FINAL_STATES = ("Succeeded", "Failed", "Interrupted", "Canceled")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_ASCII = "|/-\\"
TICK = 0.1  # seconds between spinner frames


def follow_hint(job: str) -> str:
    """What to run to follow (or stop) a job this command stopped waiting for."""
    return f"it continues as job {job}; follow it: zcli job wait {job} (stop it: zcli job cancel {job})"


def elapsed_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """The client's event callback: follows ``/job/<uuid>`` events of the current request."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.job: str | None = None
        self._last = ""
        self._active = False
        self._state: dict[str, Any] = {}
        self._started = 0.0
        self._frame = 0
        self._lock: Any = None
        self._stop: Any = None
        self._thread: Any = None
        encoding = (getattr(err, "encoding", None) or "utf-8").lower().replace("-", "")
        self._spinner = SPINNER if encoding == "utf8" else SPINNER_ASCII

    def __call__(self, frame: dict[str, Any]) -> None:
        path = str(frame.get("path") or "")
        data = frame.get("data") or {}
        if not path.startswith("/job/") or not isinstance(data, dict):
            return
        self.job = str(data.get("jobUuid") or self.job or "") or None
        if data.get("state") in FINAL_STATES:
            return
        if self.tty:
            self._live(data)
            return
        if "progress" not in data:  # the job's start: nothing to show yet
            return
        text = data.get("text") or ""
        line = f"{data.get('name') or 'job'}: {data.get('progress')}%" + (
            f" {text}" if text else ""
        )
        if line == self._last:
            return
        self._last = line
        self.err.write(line + "\n")
        self.err.flush()

    # ----------------------------------------------------------------- terminal

    def _live(self, data: dict[str, Any]) -> None:
        if not self._started:
            self._started = time.monotonic()
        for key in ("name", "progress", "text", "step", "steps"):
            if data.get(key) not in (None, ""):
                self._state[key] = data[key]
        if self._thread is None:
            self._start_spinner()
        self._draw()

    def line(self, now: float | None = None) -> str:
        """The live line: spinner, API, step, percentage, elapsed time."""
        s = self._state
        parts = [self._spinner[self._frame % len(self._spinner)], str(s.get("name") or "job")]
        step = f"{s['step']}/{s['steps']}" if s.get("steps") else ""
        text = " ".join(p for p in (step, str(s.get("text") or "")) if p)
        if text:
            parts.append(text)
        if "progress" in s:
            parts.append(f"{s['progress']}%")
        now = time.monotonic() if now is None else now
        parts.append(elapsed_text(now - self._started))
        return "  ".join(parts)

    def _draw(self) -> None:
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            line = self.line()
            if line != self._last:
                self._last = line
                self.err.write("\r\x1b[K" + line)
                self.err.flush()
                self._active = True
        finally:
            if lock is not None:
                lock.release()

    def _start_spinner(self) -> None:
        import threading  # only on a terminal, only for a long operation

        self._lock = threading.Lock()
        self._stop = threading.Event()
        stop = self._stop

        def spin() -> None:
            while not stop.wait(TICK):
                self._frame += 1
                try:
                    self._draw()
                except (OSError, ValueError):  # stderr went away
                    return

        self._thread = threading.Thread(target=spin, name="zcli-progress", daemon=True)
        self._thread.start()

    def done(self) -> None:
        """End the rewriting line (if any) and forget the job."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(1.0)
            self._thread = None
        if self._active:
            self.err.write("\r\x1b[K")
            self.err.flush()
        self._active = False
        self._last = ""
        self._state = {}
        self._started = 0.0
        self.job = None
