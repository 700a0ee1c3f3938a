"""A subscriber that stops reading never holds up the API calls that publish events."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.support.inproc import running_node
from zmn.api.wire import decode_body, encode
from zmn.client import AsyncClient
from zmn.core.node import Node
from zmn.outbox import LOST_PATH
from zmn.server import ApiServer
from zmn.services.identity.service import IdentityService
from zmn.services.management.service import ManagementService
from zmn.services.query.service import QueryService
from zmn.services.zone.service import ZoneService

QUEUE_BOUND = 200  # api.limit.events for this node
CREATES = 2000  # several times what the stopped subscriber's queue and socket buffers hold


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer]]:
    services = [IdentityService, ManagementService, QueryService, ZoneService]
    conf = {"api.limit.events": str(QUEUE_BOUND)}
    async with running_node(tmp_path / "home", services=services, conf=conf) as world:
        yield world


def read_frame_blocking(sock: socket.socket) -> dict[str, object]:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        assert chunk, "connection closed"
        head += chunk
    (length,) = struct.unpack(">I", head)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, "connection closed"
        body += chunk
    return decode_body(body)


async def creates(client: AsyncClient, count: int, prefix: str) -> list[float]:
    took = []
    for i in range(count):
        started = time.monotonic()
        await asyncio.wait_for(client.call("CreateZone", {"name": f"{prefix}{i}"}), 10)
        took.append(time.monotonic() - started)
    return took


async def test_a_stopped_subscriber_does_not_delay_creates(
    world: tuple[Node, ApiServer],
) -> None:
    node, _server = world
    path = str(node.config.unix_path)
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(path)
    stalled.settimeout(10)
    # (blocking reads run in a thread: the node serves on this test's event loop)
    assert (await asyncio.to_thread(read_frame_blocking, stalled))["type"] == "hello"
    stalled.sendall(encode({"type": "request", "id": 1, "api": "Subscribe", "args": {}}))
    assert (await asyncio.to_thread(read_frame_blocking, stalled))["ok"] is True
    # from here on it reads nothing, like a dashboard whose terminal is suspended (^Z)
    async with AsyncClient(f"unix:{path}") as client:
        baseline = await creates(client, 200, "warm")
        loaded = await creates(client, CREATES, "z")
    mean = sum(baseline) / len(baseline)
    slowest = max(loaded)
    assert sum(loaded) / len(loaded) < 2 * mean + 0.005, (mean, sum(loaded) / len(loaded))
    assert slowest < 1.0, f"a create waited {slowest:.2f} s on the stopped subscriber"

    # when it reads again it learns that it lost events (and reloads)
    lost = 0
    for _ in range(CREATES * 10):
        frame = await asyncio.to_thread(read_frame_blocking, stalled)
        if frame.get("path") == LOST_PATH:
            data = frame["data"]
            assert isinstance(data, dict)
            lost = int(data["lost"])
            break
    assert lost > 0
    stalled.close()
