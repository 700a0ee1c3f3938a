"""Each API endpoint limit on a node in this process, set low so that each shows quickly."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.inproc import running_node
from zmn.api.errors import ZmnError
from zmn.api.wire import read_frame
from zmn.client import AsyncClient
from zmn.core.node import Node
from zmn.server import ApiServer
from zmn.services.identity.service import IdentityService
from zmn.services.management.service import ManagementService
from zmn.services.query.service import QueryService
from zmn.services.zone.service import ZoneService

CONF = {
    "api.tcp.listen": "127.0.0.1:0",
    "api.limit.connections": "3",
    "api.limit.frame": str(64 * 1024),
    "api.limit.anonymous.frame": "1024",
    "api.timeout.auth": "1",
}


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer]]:
    services = [IdentityService, ManagementService, QueryService, ZoneService]
    async with running_node(tmp_path / "home", services=services, conf=CONF) as world:
        yield world


def tcp(node: Node) -> str:
    return next(e for e in node.endpoints if e.startswith("tcp://"))


def unix(node: Node) -> str:
    return f"unix:{node.config.unix_path}"


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), seconds):
        pass
    return time.monotonic() - started


async def test_a_reply_over_the_frame_limit_is_an_error_naming_the_fix(
    world: tuple[Node, ApiServer],
) -> None:
    node, _ = world
    async with AsyncClient(unix(node)) as client:
        for i in range(200):
            await client.call("CreateZone", {"name": f"z{i}", "description": "d" * 500})
        with pytest.raises(ZmnError) as err:
            await client.call("QueryZone", {})
        assert err.value.code == "WIRE.REPLY_TOO_LARGE"
        assert "limit=" in err.value.message and "fields=" in err.value.message
        # the connection is fine and a page fits
        page = await client.call("QueryZone", {"limit": 10})
        assert len(page["inventories"]) == 10


async def test_an_anonymous_frame_over_its_limit_is_refused_on_the_header(
    world: tuple[Node, ApiServer],
) -> None:
    node, _ = world
    host, port = tcp(node).removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    assert (await read_frame(reader))["type"] == "hello"  # type: ignore[index]
    writer.write(struct.pack(">I", 1024 * 1024))  # announces 1 MiB and sends none of it
    await writer.drain()
    reply = await asyncio.wait_for(read_frame(reader), 2)
    assert reply is not None and reply["error"]["code"] == "WIRE.BAD_FRAME"
    assert "log in first" in reply["error"]["message"]
    await closed_within(reader, 2)
    writer.close()


async def test_an_unauthenticated_tcp_connection_is_closed_after_the_auth_timeout(
    world: tuple[Node, ApiServer],
) -> None:
    node, _ = world
    async with AsyncClient(tcp(node)) as idle, AsyncClient(unix(node)) as admin:
        await idle.call("Ping")  # a public API does not authenticate the connection
        started = time.monotonic()
        while idle.connected and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
        assert not idle.connected
        assert time.monotonic() - started < 3
        assert idle.closed_error is not None
        assert idle.closed_error.code == "NODE.CONNECTION_CLOSED"
        await admin.call("Ping")  # the local admin is never timed out


async def test_connections_over_the_limit_are_refused_but_the_local_admin_gets_in(
    world: tuple[Node, ApiServer],
) -> None:
    node, server = world
    host, port = tcp(node).removeprefix("tcp://").rsplit(":", 1)
    held = [socket.create_connection((host, int(port))) for _ in range(3)]
    try:
        await asyncio.sleep(0.3)
        assert server.gate.open["tcp"] == 3
        extra = await asyncio.open_connection(host, int(port))
        await closed_within(extra[0], 2)  # closed without a byte
        extra[1].close()
        admins = [await AsyncClient(unix(node)).connect() for _ in range(5)]  # 3 + reserve
        try:
            for client in admins:
                assert await client.call("Ping") is not None
        finally:
            for client in admins:
                await client.close()
    finally:
        for s in held:
            s.close()
