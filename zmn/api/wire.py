"""Framing of the message API (see docs/protocol.md).

A frame is a 4-byte big-endian unsigned length followed by that many bytes of UTF-8 JSON
holding one object. Frames larger than :data:`MAX_FRAME` are refused. Every frame has a
``type``:

* ``hello``   server -> client, first frame: version, node, catalogue hash, auth mode
* ``request`` client -> server: ``id``, ``api``, ``args``, ``session``, optional ``wait``
  (default true), ``progress`` (stream job events for this request)
* ``reply``   server -> client: ``id``, ``ok``, then ``result`` or ``error``; ``job`` when
  the API ran as a job
* ``event``   server -> client: ``path``, ``data``, ``time`` (subscriptions and progress);
  :data:`EVENTS_LOST_PATH` when the client fell behind and events were dropped
"""

from __future__ import annotations

from zmn.api.errors import InvalidArgument

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # asyncio costs ~45 ms to import: one-shot CLI commands never need it
    import asyncio
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from typing import Any

MAX_FRAME = 16 * 1024 * 1024


class _Header:
    """The 4-byte big-endian length before each frame (``struct.Struct(">I")``'s ``size``,
    ``pack`` and ``unpack``, with int methods: importing struct costs a cold zcli)."""

    size = 4

    @staticmethod
    def pack(length: int) -> bytes:
        return length.to_bytes(4, "big")

    @staticmethod
    def unpack(header: bytes) -> tuple[int]:
        return (int.from_bytes(header, "big"),)


HEADER = _Header()
PROTOCOL_VERSION = 1
# the event a subscriber gets after the node dropped events it was too slow to take:
# ``{"lost": N}``; what it shows may be stale, so it reloads
EVENTS_LOST_PATH = "/zmn/events/lost"


class _Codec:
    """msgspec's JSON encoder and decoder, made at first use: importing msgspec costs a
    cold process tens of ms, which the blocking client (zcli) avoids with :mod:`json`."""

    def encode(self, obj: Any) -> bytes:
        body: bytes = _load()[0].encode(obj)
        return body

    def decode(self, body: bytes) -> Any:
        return _load()[1].decode(body)


def _load() -> tuple[Any, Any]:
    global _encoder, _decoder
    import msgspec

    _encoder, _decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
    return _encoder, _decoder


_encoder: Any = _Codec()
_decoder: Any = _encoder


class FrameError(InvalidArgument):
    """A frame that cannot be read: too large, not JSON, not an object."""

    default_code = "WIRE.BAD_FRAME"


def encode(obj: Any) -> bytes:
    body: bytes = _encoder.encode(obj)
    return HEADER.pack(len(body)) + body


def encode_body(obj: Any) -> bytes:
    body: bytes = _encoder.encode(obj)
    return body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        obj = _decoder.decode(body)
    except RecursionError:  # ``[[[[...`` deeper than the interpreter's stack
        raise FrameError("frame nests JSON too deeply") from None
    except Exception as exc:
        import msgspec

        if isinstance(exc, (msgspec.DecodeError, UnicodeDecodeError)):
            raise FrameError(f"frame is not valid JSON: {exc}") from None
        raise
    if not isinstance(obj, dict):
        raise FrameError("frame must hold a JSON object")
    return obj


def encode_std(obj: Any) -> bytes:
    """:func:`encode` with the standard library's JSON encoder (the blocking client: a cold
    ``zcli`` does not import msgspec, nor the json package: :mod:`zmn.api.cjson`); what it
    cannot encode goes through msgspec."""
    from zmn.api import cjson

    try:
        data = cjson.dumps(obj, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError):  # datetimes, sets, NaN, lone surrogates: msgspec's rules
        return encode(obj)
    return HEADER.pack(len(data)) + data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_body_std(body: bytes) -> dict[str, Any]:
    """:func:`decode_body` with the standard library's JSON decoder (:mod:`zmn.api.cjson`),
    for the blocking client."""
    from zmn.api import cjson

    try:
        obj = cjson.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise FrameError("frame nests JSON too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise FrameError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError("frame must hold a JSON object")
    return obj


async def read_frame(
    reader: asyncio.StreamReader,
    max_frame: int | None = None,
    admit: Callable[[int], AbstractContextManager[object]] | None = None,
) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream.

    The length is checked against ``max_frame`` before any of the body is read; the body is
    read inside ``admit(length)`` when given (a shared budget, which may refuse it).
    """
    import asyncio

    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("connection closed inside a frame header") from None
        return None
    (length,) = HEADER.unpack(header)
    if max_frame is None:
        max_frame = MAX_FRAME
    if length > max_frame:
        hint = "" if max_frame == MAX_FRAME else " (log in first: the limit is higher then)"
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_frame}{hint}")
    try:
        if admit is None:
            body = await reader.readexactly(length)
        else:
            with admit(length):
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
    return decode_body_std(body)


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
