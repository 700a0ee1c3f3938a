"""What the node sends on one API connection, written by one task per connection.

Replies and events are put in a bounded queue and a single writer task sends them in order,
so nobody but that task ever waits on the client's socket: an event publisher (any API call
that changes something) only appends, and a subscriber that stops reading loses events
instead of holding anyone up.

* An event goes in only while fewer than ``max_events`` events and fewer than ``max_bytes``
  bytes are queued; otherwise it is dropped and counted. As soon as there is room again the
  client gets one ``/zmn/events/lost`` event with ``{"lost": N}`` (ztui reloads on it), in
  order with the events it did get.
* A reply is never dropped: the request that produced it waits until the queue holds less
  than ``max_bytes`` (the connection's own backpressure; its in-flight limit then stops the
  node reading more requests from it).
* A reply whose encoding exceeds ``max_frame`` becomes a ``WIRE.REPLY_TOO_LARGE`` error
  naming the fix instead of a frame the client would refuse.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from zmn.api.errors import InvalidArgument
from zmn.api.wire import EVENTS_LOST_PATH as LOST_PATH
from zmn.api.wire import encode


class ReplyTooLarge(InvalidArgument):
    default_code = "WIRE.REPLY_TOO_LARGE"


class Outbox:
    def __init__(
        self,
        writer: asyncio.StreamWriter,
        *,
        max_events: int,
        max_bytes: int,
        max_frame: int,
    ) -> None:
        self.writer = writer
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_frame = max_frame
        self.closed = False
        self.lost = 0  # dropped since the last notice
        self.lost_total = 0
        self.sent_at = time.monotonic()
        self._queue: deque[tuple[bytes, bool]] = deque()
        self._events = 0
        self._bytes = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.task = asyncio.get_running_loop().create_task(self._run())

    def resize(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        if self._bytes < max_bytes:
            self._room.set()

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def queued_events(self) -> int:
        return self._events

    def _append(self, data: bytes, event: bool) -> None:
        self._queue.append((data, event))
        self._bytes += len(data)
        self._events += event
        if self._bytes >= self.max_bytes:
            self._room.clear()
        self._wake.set()

    def _has_room(self, size: int) -> bool:
        return self._events < self.max_events and self._bytes + size <= self.max_bytes

    def event(self, frame: dict[str, Any]) -> bool:
        """Queue an event; False (and counted as lost) when the subscriber is behind."""
        if self.closed:
            return False
        data = encode(frame)
        if len(data) > self.max_frame or not self._has_room(len(data)):
            self.lost += 1
            self.lost_total += 1
            return False
        self._notice_lost()
        self._append(data, True)
        return True

    def _notice_lost(self) -> None:
        if self.lost:
            notice = {"type": "event", "path": LOST_PATH, "data": {"lost": self.lost}}
            self._append(encode({**notice, "time": time.time()}), True)
            self.lost = 0

    async def reply(self, frame: dict[str, Any]) -> None:
        """Queue a reply, waiting while the connection's queue is full."""
        data = encode(frame)
        if len(data) > self.max_frame:
            err = ReplyTooLarge(
                f"the reply of {len(data)} bytes exceeds the frame limit of {self.max_frame}"
                " bytes: page through the result (limit= with after= or start=) or select"
                " fewer fields (fields=)",
                field="limit",
                size=len(data),
                limit=self.max_frame,
            )
            data = encode({"type": "reply", "id": frame.get("id"), "ok": False,
                           "error": err.to_wire()})  # fmt: skip
        while not self.closed and not self._room.is_set():
            await self._room.wait()
        if not self.closed:
            self._append(data, False)

    def send_now(self, frame: dict[str, Any]) -> None:
        """Queue a frame regardless of the limits (the greeting, a last error)."""
        if not self.closed:
            self._append(encode(frame), False)

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self.closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                data, event = self._queue.popleft()
                self._bytes -= len(data)
                self._events -= event
                if self._bytes < self.max_bytes:
                    self._room.set()
                self.writer.write(data)
                await self.writer.drain()
                self.sent_at = time.monotonic()
                if not self._queue:
                    self._notice_lost()
        except (ConnectionError, RuntimeError, OSError):
            pass
        finally:
            self.closed = True
            self._queue.clear()
            self._room.set()

    async def close(self, timeout: float = 1.0) -> None:
        """Stop taking frames; send what is queued (for ``timeout`` at most)."""
        self.closed = True
        self._wake.set()
        self._room.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()

    def abort(self) -> None:
        self.closed = True
        self._room.set()
        self.task.cancel()
