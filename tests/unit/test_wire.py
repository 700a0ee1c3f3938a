"""Framing of the message API: length-prefixed JSON objects, refused when malformed."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from zmn.api import wire
from zmn.api.errors import InvalidArgument
from zmn.api.wire import HEADER, MAX_FRAME, FrameError, decode_body, encode, read_frame


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_encode_then_read_roundtrip_several_frames() -> None:
    frames = [
        {"type": "request", "id": "1", "api": "CreateZone", "args": {"name": "z1"}},
        {"type": "reply", "id": "1", "ok": True, "result": {"n": [1, 2.5, None, True]}},
        {"type": "event", "path": "/zone/created", "data": {"name": "zéro ✓"}},
    ]
    reader = _reader(b"".join(encode(f) for f in frames))
    for expected in frames:
        assert await read_frame(reader) == expected
    assert await read_frame(reader) is None  # clean end of stream


def test_encode_prefixes_the_big_endian_body_length() -> None:
    data = encode({"a": 1})
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert data[4:] == b'{"a":1}'


async def test_oversize_frame_is_refused_before_reading_the_body() -> None:
    reader = _reader(HEADER.pack(MAX_FRAME + 1))  # no body at all: must not wait for it
    with pytest.raises(FrameError) as info:
        await read_frame(reader)
    assert "exceeds" in info.value.message
    assert info.value.code == "WIRE.BAD_FRAME"
    assert isinstance(info.value, InvalidArgument)


async def test_frame_of_exactly_max_size_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_FRAME", 9)
    body = b'{"a":123}'
    assert len(body) == 9
    assert await read_frame(_reader(HEADER.pack(9) + body)) == {"a": 123}
    with pytest.raises(FrameError):
        await read_frame(_reader(HEADER.pack(10) + b'{"a":1234}'))


@pytest.mark.parametrize("body", [b"[1,2]", b'"text"', b"42", b"null", b"true"])
async def test_non_object_json_is_refused(body: bytes) -> None:
    with pytest.raises(FrameError, match="JSON object"):
        await read_frame(_reader(HEADER.pack(len(body)) + body))


@pytest.mark.parametrize("body", [b"{", b"not json", b"\xff\xfe{}", b'{"a":1}x'])
def test_invalid_json_is_refused(body: bytes) -> None:
    with pytest.raises(FrameError, match="not valid JSON"):
        decode_body(body)


async def test_truncated_body_is_an_error_not_end_of_stream() -> None:
    data = encode({"type": "request", "id": "x"})
    with pytest.raises(FrameError, match="inside a frame"):
        await read_frame(_reader(data[:-3]))


async def test_truncated_header_is_an_error() -> None:
    with pytest.raises(FrameError, match="header"):
        await read_frame(_reader(b"\x00\x00"))


async def test_empty_stream_is_a_clean_end() -> None:
    assert await read_frame(_reader(b"")) is None


def test_sync_reader_roundtrip_and_errors() -> None:
    a, b = socket.socketpair()
    try:
        a.sendall(encode({"type": "hello", "version": 1}) + encode({"x": [1]}))
        assert wire.read_frame_sync(b) == {"type": "hello", "version": 1}
        assert wire.read_frame_sync(b) == {"x": [1]}
        a.sendall(HEADER.pack(MAX_FRAME + 1))
        with pytest.raises(FrameError, match="exceeds"):
            wire.read_frame_sync(b)
    finally:
        a.close()
        b.close()


def test_sync_reader_truncated_body_and_clean_close() -> None:
    a, b = socket.socketpair()
    try:
        a.sendall(encode({"k": "v"})[:-2])
        a.close()
        with pytest.raises(FrameError, match="inside a frame"):
            wire.read_frame_sync(b)
    finally:
        b.close()
    a, b = socket.socketpair()
    try:
        a.close()
        assert wire.read_frame_sync(b) is None
    finally:
        b.close()
