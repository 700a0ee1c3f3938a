"""Fuzzing the wire decoder: any bytes give a frame (a dict) or FrameError, nothing else.

Three layers: :func:`decode_body` on arbitrary bytes and on JSON of arbitrary shape,
:func:`read_frame` on arbitrary streams (headers of any length, truncation anywhere), and
:func:`read_frame_sync` on the same streams through a socket pair.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zmn.api.wire import MAX_FRAME, FrameError, decode_body, encode, read_frame, read_frame_sync


def budget(examples: int) -> settings:
    """The examples this test contributes to the suite's fuzzing budget (see docs/reliability.md)."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
# Bytes that are mostly JSON-looking, so the decoder gets past its first character often.
json_ish = st.lists(
    st.sampled_from(
        [b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"\\u", b"d800", b"1e999", b"-",
         b"null", b"true", b"nan", b" ", b"\x00", b"\xff", b"\xc3", b"\xa9", b"type", b"0"]
    ),
    max_size=40,
).map(b"".join)  # fmt: skip


def check_body(body: bytes) -> None:
    try:
        frame = decode_body(body)
    except FrameError as exc:
        assert exc.code == "WIRE.BAD_FRAME"
        return
    assert isinstance(frame, dict)


@budget(2000)
@given(st.binary(max_size=300) | json_ish)
def test_decode_body_of_any_bytes(body: bytes) -> None:
    check_body(body)


@budget(400)
@given(json_values)
def test_decode_body_of_any_json(value: Any) -> None:
    body = json.dumps(value).encode()
    try:
        frame = decode_body(body)
    except FrameError:
        assert not isinstance(value, dict)  # valid JSON is refused only for not being an object
        return
    assert isinstance(value, dict) and frame == json.loads(body)


def test_decode_body_of_deep_nesting() -> None:
    for depth in (100, 1000, 100_000):
        check_body(b"[" * depth + b"]" * depth)
        check_body(b'{"a":' * depth + b"1" + b"}" * depth)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def stream_of(data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(loop=loop)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


# A stream: some valid frames, some headers announcing any length, garbage, cut anywhere.
stream_parts = st.one_of(
    json_values.map(lambda v: encode({"type": "request", "args": v})),
    st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n)),
    st.sampled_from([struct.pack(">I", MAX_FRAME + 1), struct.pack(">I", MAX_FRAME)]),
    st.binary(max_size=64),
    json_ish.map(lambda b: struct.pack(">I", len(b)) + b),
)
streams = st.tuples(st.lists(stream_parts, max_size=6), st.integers(0, 10_000)).map(
    lambda t: b"".join(t[0])[: t[1]]
)


async def drain(reader: asyncio.StreamReader) -> list[dict[str, Any]]:
    out = []
    while True:
        frame = await read_frame(reader)
        if frame is None:
            return out
        out.append(frame)


@budget(1000)
@given(streams)
def test_read_frame_of_any_stream(loop: asyncio.AbstractEventLoop, data: bytes) -> None:
    try:
        got = loop.run_until_complete(drain(stream_of(data, loop)))
    except FrameError as exc:
        assert exc.code == "WIRE.BAD_FRAME"
        return
    assert all(isinstance(f, dict) for f in got)


@budget(300)
@given(streams)
def test_read_frame_sync_of_any_stream(data: bytes) -> None:
    a, b = socket.socketpair()
    try:
        a.sendall(data)  # the pair's buffer holds 10 kB
        a.shutdown(socket.SHUT_WR)
        b.settimeout(5)
        try:
            while read_frame_sync(b) is not None:
                pass
        except FrameError as exc:
            assert exc.code == "WIRE.BAD_FRAME"
    finally:
        a.close()
        b.close()


def test_valid_frames_round_trip(loop: asyncio.AbstractEventLoop) -> None:
    frames_in = [
        {"type": "request", "id": i, "api": "Ping", "args": {"x": "é" * i}} for i in range(5)
    ]
    data = b"".join(encode(f) for f in frames_in)
    assert loop.run_until_complete(drain(stream_of(data, loop))) == frames_in
