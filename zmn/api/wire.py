"""Framing of the message API (see docs/protocol.md).

A frame is a 4-byte big-endian unsigned length followed by that many bytes of UTF-8 JSON
holding one object. Frames larger than :data:`MAX_FRAME` are refused. Every frame has a
``type``:

* ``hello``   server -> client, first frame: version, node, catalogue hash, auth mode
* ``request`` client -> server: ``id``, ``api``, ``args``, ``session``, optional ``wait``
  (default true), ``progress`` (stream job events for this request)
* ``reply``   server -> client: ``id``, ``ok``, then ``result`` or ``error``; ``job`` when
  the API ran as a job
* ``event``   server -> client: ``path``, ``data``, ``time`` (subscriptions and progress)
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import msgspec

from zmn.api.errors import InvalidArgument

if TYPE_CHECKING:  # asyncio costs ~45 ms to import: one-shot CLI commands never need it
    import asyncio

MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")
PROTOCOL_VERSION = 1

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class FrameError(InvalidArgument):
    """A frame that cannot be read: too large, not JSON, not an object."""

    default_code = "WIRE.BAD_FRAME"


def encode(obj: Any) -> bytes:
    body = _encoder.encode(obj)
    return HEADER.pack(len(body)) + body


def encode_body(obj: Any) -> bytes:
    return _encoder.encode(obj)


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        obj = _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise FrameError(f"frame is not valid JSON: {exc}") from None
    except RecursionError:  # ``[[[[...`` deeper than the interpreter's stack
        raise FrameError("frame nests JSON too deeply") from None
    if not isinstance(obj, dict):
        raise FrameError("frame must hold a JSON object")
    return obj


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream."""
    import asyncio

    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("connection closed inside a frame header") from None
        return None
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {MAX_FRAME}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("connection closed inside a frame") from None
    return decode_body(body)


def read_frame_sync(sock: Any) -> dict[str, Any] | None:
    """Blocking read of one frame from a socket (the synchronous client)."""
    header = _recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {MAX_FRAME}")
    body = _recv_exactly(sock, length)
    if body is None:
        raise FrameError("connection closed inside a frame")
    return decode_body(body)


def _recv_exactly(sock: Any, n: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            if chunks:
                raise FrameError("connection closed inside a frame")
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
