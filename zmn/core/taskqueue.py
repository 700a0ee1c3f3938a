"""Task queues: FIFO per signature with a parallelism level.

Operations on one VM share the signature ``vm:<uuid>`` with level 1, so they run one at a
time in arrival order; operations on a host share ``host:<uuid>`` with a configurable level.
The queues are visible through the ``GetTaskQueues`` API.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Queue:
    level: int
    running: list[str] = field(default_factory=list)
    waiters: deque[tuple[asyncio.Future[None], str, float]] = field(default_factory=deque)


class TaskQueues:
    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self.completed = 0

    @asynccontextmanager
    async def slot(self, signature: str, level: int = 1, task: str = "") -> AsyncIterator[None]:
        """Hold one of ``level`` slots of ``signature`` for the body, waiting in FIFO order."""
        q = self._queues.get(signature)
        if q is None:
            q = self._queues[signature] = _Queue(max(1, level))
        else:
            q.level = max(1, level)
        if len(q.running) < q.level and not q.waiters:
            q.running.append(task)
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (fut, task, time.monotonic())
            q.waiters.append(entry)
            try:
                await fut
            except asyncio.CancelledError:
                if entry in q.waiters:
                    q.waiters.remove(entry)
                elif fut.done() and not fut.cancelled():
                    self._release(signature, q, task)
                raise
        try:
            yield
        finally:
            self._release(signature, q, task)

    def vm(self, vm_uuid: str | None, task: str) -> AbstractAsyncContextManager[None]:
        """The VM's slot (``vm:<uuid>``, level 1); no slot at all for work on no VM (a volume
        attached to none)."""
        if vm_uuid is None:
            return nullcontext()
        return self.slot(f"vm:{vm_uuid}", 1, task)

    def _release(self, signature: str, q: _Queue, task: str) -> None:
        if task in q.running:
            q.running.remove(task)
        self.completed += 1
        while q.waiters and len(q.running) < q.level:
            fut, name, _ = q.waiters.popleft()
            if not fut.done():
                q.running.append(name)
                fut.set_result(None)
        if not q.running and not q.waiters and self._queues.get(signature) is q:
            del self._queues[signature]

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "signature": sig,
                "level": q.level,
                "running": len(q.running),
                "pending": len(q.waiters),
                "runningTasks": list(q.running),
                "pendingTasks": [name for _, name, _ in q.waiters],
                "oldestWaitSeconds": round(now - q.waiters[0][2], 3) if q.waiters else 0,
            }
            for sig, q in sorted(self._queues.items())
        ]

    def depth(self) -> int:
        return sum(len(q.running) + len(q.waiters) for q in self._queues.values())
