"""Long commands run in the background; their result goes to the node as a signed report.

A command sent with ``"callback": true`` is answered at once with ``{"taskId": ...}`` (the
node may choose the id, so it can register its waiter before sending). When the work ends the
reporter pushes ``{"type": "task.result", "taskId", "command", "success", "result" | "error"}``.
The last results are also kept in memory for ``GET /v1/task/<id>``, which the node uses
when a report was lost.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.reporter import Reporter
from zmn.api.errors import Conflict, InternalError, ZmnError, not_found

log = logging.getLogger("zagent.tasks")


class TaskRunner:
    def __init__(self, reporter: Reporter, workers: int = 8, keep: int = 1000) -> None:
        self._reporter = reporter
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="zagent-task")
        self._keep = keep
        self._tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, command: str, fn: Callable[[], dict[str, Any]], task_id: str | None) -> str:
        tid = task_id or uuid.uuid4().hex
        with self._lock:
            if tid in self._tasks:
                raise Conflict(f"task {tid} already exists", code="AGENT.TASK_EXISTS")
            self._tasks[tid] = {"taskId": tid, "command": command, "status": "running"}
            while len(self._tasks) > self._keep:
                self._tasks.popitem(last=False)
        self._pool.submit(self._run, tid, command, fn)
        return tid

    def _run(self, tid: str, command: str, fn: Callable[[], dict[str, Any]]) -> None:
        report: dict[str, Any] = {"taskId": tid, "command": command}
        try:
            report.update(success=True, result=fn())
        except ZmnError as err:
            report.update(success=False, error=err.to_wire())
        except Exception as exc:  # a bug in a command must still produce a result
            log.exception("task %s (%s) failed", tid, command)
            bug = InternalError(f"{exc.__class__.__name__}: {exc}", code="AGENT.INTERNAL")
            report.update(success=False, error=bug.to_wire())
        with self._lock:
            if tid in self._tasks:
                self._tasks[tid] = {**report, "status": "done"}
        self._reporter.submit("task.result", report)

    def get(self, tid: str) -> dict[str, Any]:
        with self._lock:
            task = self._tasks.get(tid)
        if task is None:
            raise not_found("AgentTask", tid, field="taskId")
        return dict(task)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
