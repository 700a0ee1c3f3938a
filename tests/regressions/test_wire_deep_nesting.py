"""Regression: a frame nesting JSON deeper than the interpreter's stack raised RecursionError.

``decode_body(b"[" * 100_000 + b"]" * 100_000)`` escaped as RecursionError instead of
FrameError, so the server's connection handler died with an unhandled exception (logged
as a traceback) and the client got no error reply. Found by tests/unit/test_fuzz_wire.py.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from tests.support.inproc import running_node
from zmn.api.wire import FrameError, decode_body, read_frame
from zmn.client import AsyncClient
from zmn.services.management.service import ManagementService

DEEP = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_decode_body_says_frame_error() -> None:
    with pytest.raises(FrameError) as err:
        decode_body(DEEP)
    assert err.value.code == "WIRE.BAD_FRAME"


async def test_the_server_answers_and_keeps_serving(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home", services=[ManagementService]) as (node, _s):
        path = str(node.config.unix_path)
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            assert (await read_frame(reader) or {}).get("type") == "hello"
            writer.write(struct.pack(">I", len(DEEP)) + DEEP)
            await writer.drain()
            reply = await asyncio.wait_for(read_frame(reader), 10)
            assert reply is not None and reply["ok"] is False
            assert reply["error"]["code"] == "WIRE.BAD_FRAME"
            assert await asyncio.wait_for(read_frame(reader), 10) is None  # then closed
        finally:
            writer.close()
        async with AsyncClient(f"unix:{path}") as c:
            assert (await c.call("Ping"))["pong"] is True
