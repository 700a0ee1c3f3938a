"""Byte streams multiplexed on an API connection (the VM serial console).

A request for an API that has a :class:`~zmn.core.consoles.StreamOpener` runs like any call
(authentication, ownership, audit); when it succeeds the opener connects the backend (the
agent's console) and the reply carries ``"stream": ID``. From then on both sides send
``stream`` frames on the same connection::

    {"type": "stream", "stream": ID, "data": "<base64 bytes>"}
    {"type": "stream", "stream": ID, "end": true, "reason": "..."}

An ``end`` from the client detaches; an ``end`` from the node says the backend closed (the
VM stopped, or another session took the console over). Closing the connection ends its
streams. Reading the backend waits for each frame to be written, so a slow client slows the
console down instead of filling the node's memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidArgument

if TYPE_CHECKING:
    from zmn.core.consoles import Pipe
    from zmn.server import Connection

log = logging.getLogger("zmn.streams")

CHUNK = 32 * 1024
MAX_STREAMS = 16  # per connection


@dataclass
class Stream:
    id: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None
    ended: bool = False
    inbound: asyncio.Lock = field(default_factory=asyncio.Lock)


class Streams:
    """The open streams of one connection."""

    _ids = itertools.count(1)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.open: dict[str, Stream] = {}

    @property
    def active(self) -> bool:
        """A console is attached: the connection is in use even when no request runs."""
        return bool(self.open)

    async def start(self, reply: dict[str, Any], pipe: Pipe) -> None:
        """Send ``reply`` with the new stream's ID, then relay the backend to the client."""
        reader, writer = pipe
        if len(self.open) >= MAX_STREAMS:
            writer.close()
            raise InvalidArgument(
                f"a connection may hold {MAX_STREAMS} streams; end one first",
                code="WIRE.TOO_MANY_STREAMS",
            )
        stream = Stream(f"s{next(self._ids)}", reader, writer)
        self.open[stream.id] = stream
        await self.conn.send({**reply, "stream": stream.id})
        stream.task = asyncio.get_running_loop().create_task(self._outbound(stream))

    async def _outbound(self, stream: Stream) -> None:
        reason = "the console was closed by the host (the VM stopped or another session took it)"
        try:
            while not self.conn.closed:
                data = await stream.reader.read(CHUNK)
                if not data:
                    break
                frame = {"type": "stream", "stream": stream.id}
                frame["data"] = base64.b64encode(data).decode()
                await self.conn.send(frame)
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = f"the console connection failed: {exc}"
        finally:
            if not stream.ended:
                await self.conn.send(
                    {"type": "stream", "stream": stream.id, "end": True, "reason": reason}
                )
            self._drop(stream)

    async def client_frame(self, frame: dict[str, Any]) -> None:
        """A ``stream`` frame from the client: bytes for the backend, or the end."""
        stream = self.open.get(str(frame.get("stream")))
        if stream is None:
            return  # ended meanwhile: the client learns it from our end frame
        if frame.get("end"):
            stream.ended = True
            self._drop(stream)
            return
        try:
            data = base64.b64decode(str(frame.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            await self.conn.send(
                {"type": "stream", "stream": stream.id, "end": True, "reason": "data is not base64"}
            )
            stream.ended = True
            self._drop(stream)
            return
        async with stream.inbound:  # in order, and the client waits for a slow backend
            try:
                stream.writer.write(data)
                await stream.writer.drain()
            except (OSError, RuntimeError):
                self._drop(stream)

    def _drop(self, stream: Stream) -> None:
        if self.open.pop(stream.id, None) is None:
            return
        stream.writer.close()
        task = stream.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def close(self) -> None:
        for stream in list(self.open.values()):
            stream.ended = True
            self._drop(stream)
