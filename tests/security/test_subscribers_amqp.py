"""On the RabbitMQ bus a node that stops taking events never makes anyone wait for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pika
import pytest

from tests.integration.test_amqp_bus import (  # noqa: F401 - fixtures
    NODE_A,
    NODE_B,
    URL,
    make_bus,
    namespace,
)
from zmn.core.amqp_bus import AmqpBus
from zmn.core.bus import Event

pytestmark = pytest.mark.rabbitmq

QUEUED = 50  # events_queued of the stalled node
PREFETCH = 20


def queued(queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


async def test_a_stalled_node_holds_a_bounded_event_queue_and_publishers_never_wait(
    make_bus: Callable[..., AmqpBus],  # noqa: F811
) -> None:
    a = make_bus(NODE_A)
    b = make_bus(NODE_B, prefetch=PREFETCH, events_queued=QUEUED)
    await asyncio.gather(a.start(), b.start())
    stuck = asyncio.Event()
    got: list[str] = []

    async def stalled(event: Event) -> None:  # a subscriber that never returns
        got.append(event.path)
        await stuck.wait()

    b.subscribe("/zone/**", stalled)
    await b.settle()
    started = time.monotonic()
    for i in range(1000):
        await a.publish("/zone/created", {"i": i})
    publishing = time.monotonic() - started
    await asyncio.sleep(1)  # let the broker route what it was given
    held = await asyncio.to_thread(queued, b.event_queue)
    assert held <= QUEUED, f"the broker holds {held} events for the stalled node"
    assert got == ["/zone/created"]  # the node took one and is stuck on it
    assert publishing < 10
    stuck.set()
