"""The RabbitMQ bus against the real broker: two nodes' buses in one process.

Every test runs under a random namespace (queue and exchange name prefix) and removes what it
declared, so runs do not see each other and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.conftest import need
from tests.support.inproc import Api, running_node
from zmn.api.errors import (
    Conflict,
    InternalError,
    InvalidArgument,
    NotFound,
    Timeout,
    Unavailable,
)
from zmn.api.message import ApiMessage, api, decode_args
from zmn.core.amqp_bus import AmqpBus, PortalRequest, binding_key, routing_key
from zmn.core.bus import Envelope, Event, Principal
from zmn.core.ring import HashRing

pytestmark = pytest.mark.rabbitmq

URL = os.environ.get("ZMN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
ADMIN = Principal("0" * 32, "admin", "SystemAdmin", userUuid="u" * 32)
NODE_A = "a" * 32
NODE_B = "b" * 32


@api(internal=True)
class PutThing(ApiMessage, kw_only=True):
    """A typed message that crosses the bus as arguments and is rebuilt on the far side."""

    name: str
    size: int = 1
    tags: list[str] = []


APIS: dict[str, type[ApiMessage]] = {"PutThing": PutThing}


def decode(name: str, args: dict[str, Any]) -> Any:
    return decode_args(APIS[name], args)


def broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def cleanup(namespace: str, queues: list[str]) -> None:
    """Delete the shared objects of a namespace (the buses delete their own queues on stop)."""
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        ch = conn.channel()
        for q in [f"{namespace}.api.portal", *queues]:
            ch.queue_delete(q)
        ch.exchange_delete(f"{namespace}.zmn.events")
    finally:
        conn.close()


def queue_exists(name: str) -> bool:
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        conn.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    finally:
        if conn.is_open:
            conn.close()


Pair = tuple[AmqpBus, AmqpBus]


@pytest.fixture
def namespace() -> str:
    need(broker_up(), "RabbitMQ is not running on 127.0.0.1:5672")
    return "zt" + uuid.uuid4().hex[:10]


@pytest.fixture
async def make_bus(namespace: str) -> AsyncIterator[Callable[..., AmqpBus]]:
    made: list[AmqpBus] = []

    def make(node: str, **kw: Any) -> AmqpBus:
        kw.setdefault("backoff", 0.05)
        kw.setdefault("backoff_max", 0.5)
        bus = AmqpBus(URL, node, decode, namespace=namespace, **kw)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.stop()
    leftovers = [bus.service_queue(s, bus.node_uuid) for bus in made for s in bus._services]
    await asyncio.to_thread(cleanup, namespace, leftovers)


@pytest.fixture
async def pair(make_bus: Callable[..., AmqpBus]) -> Pair:
    a, b = make_bus(NODE_A), make_bus(NODE_B)
    for bus in (a, b):

        async def whoami(env: Envelope, bus: AmqpBus = bus) -> Any:
            return {"node": bus.node_uuid, "api": env.api, "message": env.message}

        bus.serve("echo", whoami)
    await asyncio.gather(a.start(), b.start())
    return a, b


def envelope(message: Any = None, api_name: str = "Echo", resource: str | None = None) -> Envelope:
    return Envelope(api_name, message, ADMIN, id="req-1", resource_uuid=resource)


# --------------------------------------------------------------------------- pure mapping


def test_event_paths_and_patterns_map_to_topic_keys() -> None:
    assert routing_key("/vm/state/change") == "vm.state.change"
    assert routing_key("/globalconfig/a.b/change") == "globalconfig.a_b.change"
    assert binding_key("/vm/*/change") == "vm.*.change"
    assert binding_key("/vm/**") == "vm.#"
    assert binding_key("/vm/state/change") == "vm.state.change"


# --------------------------------------------------------------------------- requests


async def test_call_reaches_the_service_on_the_other_node(pair: Pair) -> None:
    a, b = pair
    reply = await a.call("echo", envelope({"x": 1}), node=NODE_B, timeout=5)
    assert reply == {"node": NODE_B, "api": "Echo", "message": {"x": 1}}
    assert b.stats()["delivered"] == 1 and a.stats()["sent"] == 1
    # Without a ring or a resource, a request stays on the sending node.
    assert (await a.call("echo", envelope(), timeout=5))["node"] == NODE_A


async def test_typed_messages_and_principals_are_rebuilt_on_the_far_side(pair: Pair) -> None:
    a, b = pair
    seen: list[Envelope] = []

    async def put(env: Envelope) -> Any:
        seen.append(env)
        return {"ok": True}

    b.serve("things", put)
    await b.settle()
    msg = PutThing(name="t1", size=3, tags=["x", "y"])
    env = Envelope("PutThing", msg, ADMIN, id="req-9", job_uuid="j" * 32, resource_uuid="r" * 32)
    assert await a.call("things", env, node=NODE_B, timeout=5) == {"ok": True}
    (got,) = seen
    assert got.message == msg and isinstance(got.message, PutThing)
    assert got.principal == ADMIN
    assert (got.id, got.job_uuid, got.resource_uuid) == ("req-9", "j" * 32, "r" * 32)


async def test_the_ring_routes_a_resource_to_its_owner(pair: Pair) -> None:
    a, _ = pair
    ring = HashRing([NODE_A, NODE_B])
    a.ring = ring
    owned_by_b = next(u for u in (uuid.uuid4().hex for _ in range(100)) if ring.owner(u) == NODE_B)
    owned_by_a = next(u for u in (uuid.uuid4().hex for _ in range(100)) if ring.owner(u) == NODE_A)
    assert (await a.call("echo", envelope(resource=owned_by_b), timeout=5))["node"] == NODE_B
    assert (await a.call("echo", envelope(resource=owned_by_a), timeout=5))["node"] == NODE_A


async def test_errors_cross_the_bus_as_the_same_error(pair: Pair) -> None:
    a, b = pair

    async def fail(env: Envelope) -> Any:
        if env.message == "conflict":
            raise Conflict("thing is busy", code="THING.BUSY", field="uuid")
        raise RuntimeError("boom")

    b.serve("fail", fail)
    await b.settle()
    with pytest.raises(Conflict) as info:
        await a.call("fail", envelope("conflict"), node=NODE_B, timeout=5)
    assert info.value.code == "THING.BUSY" and info.value.field == "uuid"
    with pytest.raises(InternalError, match="RuntimeError: boom"):
        await a.call("fail", envelope("other"), node=NODE_B, timeout=5)
    with pytest.raises(NotFound) as missing:
        await a.call("nothing-here", envelope(), timeout=5)
    assert missing.value.code == "BUS.NO_SERVICE"


async def test_a_node_that_is_not_there_fails_fast(pair: Pair) -> None:
    a, _ = pair
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await a.call("echo", envelope(), node="c" * 32, timeout=5)
    assert info.value.code == "BUS.UNROUTABLE"
    assert time.monotonic() - started < 2


async def test_timeout_says_the_outcome_is_unknown(pair: Pair) -> None:
    a, b = pair
    finished: list[str] = []

    async def slow(env: Envelope) -> Any:
        await asyncio.sleep(0.6)
        finished.append(env.message)
        return "late"

    b.serve("slow", slow)
    await b.settle()
    started = time.monotonic()
    with pytest.raises(Timeout) as info:
        await a.call("slow", envelope("m1"), node=NODE_B, timeout=0.2)
    assert time.monotonic() - started < 0.5
    assert info.value.code == "BUS.TIMEOUT"
    assert "outcome unknown" in info.value.message
    assert a.stats()["inFlight"] == 0
    # The handler did run to the end: that is why the outcome was unknown.
    await asyncio.sleep(0.8)
    assert finished == ["m1"]


async def test_calls_to_a_node_that_left_fail_with_outcome_unknown(pair: Pair) -> None:
    a, b = pair
    started, release = asyncio.Event(), asyncio.Event()

    async def hang(env: Envelope) -> Any:
        started.set()
        await release.wait()

    b.serve("hang", hang)
    await b.settle()
    call = asyncio.create_task(a.call("hang", envelope(), node=NODE_B))  # no timeout at all
    await started.wait()
    assert a.fail_calls_to(NODE_A) == 0
    assert a.fail_calls_to(NODE_B) == 1  # membership's on_leave
    with pytest.raises(Unavailable) as info:
        await call
    assert info.value.code == "BUS.NODE_LEFT" and "outcome unknown" in info.value.message
    release.set()


async def test_a_retried_request_id_gets_the_first_reply(pair: Pair) -> None:
    a, b = pair
    runs = Counter[str]()

    async def count(env: Envelope) -> Any:
        runs[env.message] += 1
        await asyncio.sleep(0.1)
        return {"run": runs[env.message]}

    b.serve("count", count)
    await b.settle()
    first = await a.call("count", envelope("x"), node=NODE_B, timeout=5, request_id="R1")
    again = await a.call("count", envelope("x"), node=NODE_B, timeout=5, request_id="R1")
    assert first == again == {"run": 1}
    # Two copies in flight at once (a retry while the first still runs) also run once.
    both = await asyncio.gather(
        *(a.call("count", envelope("y"), node=NODE_B, timeout=5, request_id="R2") for _ in range(2))
    )
    assert both == [{"run": 1}, {"run": 1}]
    # A new id is a new request.
    assert await a.call("count", envelope("x"), node=NODE_B, timeout=5) == {"run": 2}
    assert runs == {"x": 2, "y": 1}
    assert b.stats()["deduped"] == 2


# --------------------------------------------------------------------------- api.portal


async def test_api_portal_spreads_requests_over_the_nodes(pair: Pair) -> None:
    a, b = pair
    handled = Counter[str]()

    def portal(bus: AmqpBus) -> Callable[[PortalRequest], Any]:
        async def handle(req: PortalRequest) -> Any:
            handled[bus.node_uuid] += 1
            await asyncio.sleep(0.02)
            return {"api": req.api, "args": req.args, "session": req.session, "node": bus.node_uuid}

        return handle

    a.serve_portal(portal(a))
    b.serve_portal(portal(b))
    await asyncio.gather(a.settle(), b.settle())
    replies = await asyncio.gather(
        *(
            a.call_portal("CreateZone", {"name": f"z{i}"}, session="s1", timeout=10)
            for i in range(40)
        )
    )
    assert [r["args"] for r in replies] == [{"name": f"z{i}"} for i in range(40)]
    assert {r["session"] for r in replies} == {"s1"}
    assert sum(handled.values()) == 40
    assert handled[NODE_A] >= 10 and handled[NODE_B] >= 10, handled


async def test_portal_errors_and_principals(pair: Pair) -> None:
    a, b = pair
    got: list[PortalRequest] = []

    async def handle(req: PortalRequest) -> Any:
        got.append(req)
        raise NotFound("no zone", code="ZONE.NOT_FOUND", field="uuid")

    b.serve_portal(handle)
    await b.settle()
    with pytest.raises(NotFound) as info:
        await a.call_portal("GetZone", {"uuid": "x"}, principal=ADMIN, request_id="7", timeout=5)
    assert info.value.code == "ZONE.NOT_FOUND"
    assert got[0].principal == ADMIN and got[0].id == "7" and got[0].session is None


# --------------------------------------------------------------------------- events


async def test_events_cross_nodes_by_pattern(pair: Pair) -> None:
    a, b = pair
    on_b: list[Event] = []
    on_b_all: list[str] = []
    on_a: list[str] = []
    sub = b.subscribe("/vm/*/change", on_b.append)

    async def everything(event: Event) -> None:
        on_b_all.append(event.path)

    b.subscribe("/vm/**", everything)
    a.subscribe("/vm/**", lambda e: on_a.append(e.path))
    await asyncio.gather(a.settle(), b.settle())

    await a.publish("/vm/state/change", {"uuid": "v1", "state": "Running"})
    await a.publish("/vm/state/other", {})
    await a.publish("/host/state/change", {})
    await _until(lambda: len(on_b_all) == 2)
    assert [(e.path, e.data) for e in on_b] == [
        ("/vm/state/change", {"uuid": "v1", "state": "Running"})
    ]
    assert on_b_all == ["/vm/state/change", "/vm/state/other"]
    assert on_a == [
        "/vm/state/change",
        "/vm/state/other",
    ]  # once: locally, not again via the broker

    sub.cancel()
    await b.settle()
    await a.publish("/vm/state/change", {"uuid": "v2"})
    await _until(lambda: len(on_b_all) == 3)
    assert len(on_b) == 1
    assert b.stats()["subscriptions"] == 1


# --------------------------------------------------------------------------- failures


async def test_a_dropped_connection_reconnects_and_calls_work_again(pair: Pair) -> None:
    a, b = pair
    drop(a)
    await _until(lambda: a.stats()["reconnects"] == 1 and a.connected)
    assert (await a.call("echo", envelope(1), node=NODE_B, timeout=5))["node"] == NODE_B
    # A call made while the link is down waits for the reconnect instead of failing.
    drop(b)
    drop(a)
    assert (await a.call("echo", envelope(2), node=NODE_B, timeout=10))["message"] == 2
    assert b.stats()["reconnects"] == 1 and a.stats()["reconnects"] == 2


async def test_the_broker_closing_the_connection_is_survived(pair: Pair) -> None:
    need(shutil.which("rabbitmqctl") is not None, "rabbitmqctl is not installed")
    a, b = pair
    await asyncio.to_thread(_close_from_broker, f"zmn {b.prefix}{NODE_B}")
    await _until(lambda: b.stats()["reconnects"] == 1 and b.connected, timeout=20)
    assert (await a.call("echo", envelope(3), node=NODE_B, timeout=5))["message"] == 3


async def test_a_request_survives_the_server_losing_its_connection_mid_call(pair: Pair) -> None:
    """Not acked when the link died: redelivered, and the dedup cache stops a second run."""
    a, b = pair
    runs: list[str] = []
    started = asyncio.Event()

    async def work(env: Envelope) -> Any:
        runs.append(env.message)
        started.set()
        await asyncio.sleep(0.3)
        return {"done": env.message}

    b.serve("work", work)
    await b.settle()
    call = asyncio.create_task(a.call("work", envelope("job1"), node=NODE_B, timeout=10))
    await started.wait()
    drop(b)
    assert await call == {"done": "job1"}
    assert runs == ["job1"]
    await _until(lambda: b.stats()["deduped"] == 1)


async def test_stop_removes_the_node_queues(make_bus: Callable[..., AmqpBus]) -> None:
    bus = make_bus(NODE_A)

    async def noop(env: Envelope) -> Any:
        return None

    bus.serve("svc", noop)
    await bus.start()
    names = [bus.service_queue("svc", NODE_A), bus.reply_queue, bus.event_queue]
    assert [await asyncio.to_thread(queue_exists, n) for n in names] == [True] * 3
    assert await asyncio.to_thread(queue_exists, bus.portal_queue)
    await bus.stop()
    assert [await asyncio.to_thread(queue_exists, n) for n in names] == [False] * 3
    with pytest.raises(Unavailable):
        await bus.call("svc", envelope())


async def test_start_gives_up_when_the_broker_is_unreachable() -> None:
    bus = AmqpBus("amqp://guest:guest@127.0.0.1:1/%2F", NODE_A, decode, start_timeout=0.5)
    with pytest.raises(Unavailable) as info:
        await bus.start()
    assert info.value.code == "BUS.DISCONNECTED"
    assert bus.stats()["connected"] is False


async def test_a_node_runs_on_the_amqp_bus_and_serves_api_portal(
    make_bus: Callable[..., AmqpBus], namespace: str, tmp_path: Path
) -> None:
    conf = {"bus.url": URL, "bus.namespace": namespace}
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        assert isinstance(node.bus, AmqpBus) and node.bus.connected
        assert node.bus.node_uuid == node.uuid
        zone = (await Api(node)("CreateZone", name="z1"))["inventory"]

        async def portal(req: PortalRequest) -> Any:  # what the node will wire up
            result, job = await node.execute(
                req.api, req.args, session=req.session, principal=req.principal, request_id=req.id
            )
            return {"result": result, "job": job}

        node.bus.serve_portal(portal)
        await node.bus.settle()
        client = make_bus("c" * 32)
        await client.start()
        admin = node.admin_principal()
        args = {"uuid": "z1", "description": "via api.portal"}  # a name, resolved by the node
        got = await client.call_portal("UpdateZone", args, principal=admin, timeout=10)
        assert got["result"]["inventory"]["uuid"] == zone["uuid"]
        assert got["result"]["inventory"]["description"] == "via api.portal"
        made = await client.call_portal("CreateZone", {"name": "z2"}, principal=admin, timeout=10)
        assert made["result"]["inventory"]["name"] == "z2"
        with pytest.raises(InvalidArgument) as info:
            await client.call_portal("CreateZone", {"nmae": "z3"}, principal=admin, timeout=10)
        assert info.value.field == "nmae"
        queues = [node.bus.service_queue(s, node.uuid) for s in node.services]
    # The node's stop removed its queues from the broker.
    assert not any([await asyncio.to_thread(queue_exists, q) for q in queues])


@pytest.mark.slow
async def test_request_reply_rate(pair: Pair) -> None:
    """Prints the rates quoted in zmn/core/amqp_bus.py; asserts only a floor far below them."""
    a, _ = pair
    rates = {}
    for in_flight, total in ((1, 1000), (20, 2000)):

        async def worker(n: int) -> None:
            for _ in range(n):
                await a.call("echo", envelope({"x": 1}), node=NODE_B, timeout=10)

        started = time.perf_counter()
        await asyncio.gather(*(worker(total // in_flight) for _ in range(in_flight)))
        rates[in_flight] = total / (time.perf_counter() - started)
    print(
        f"\namqp bus request/reply: {rates[1]:.0f}/s one at a time, {rates[20]:.0f}/s 20 in flight"
    )
    # a floor for a broken bus (a stall per call), not a benchmark: the suite shares the cores
    # (45/s one at a time was measured beside stress-ng --cpu 2 at load average 20)
    assert rates[1] > 15 and rates[20] > 30


# --------------------------------------------------------------------------- helpers


def drop(bus: AmqpBus) -> None:
    """The TCP connection to the broker dies under the bus (no AMQP close handshake)."""
    bus.link._conn._transport._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def _close_from_broker(connection_name: str) -> None:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    marker = json.dumps(["connection_name", connection_name], separators=(",", ":"))[1:-1]
    for line in out.splitlines():
        pid, _, props = line.partition("\t")
        if "{" + marker + "}" in props:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "test"], check=True)
            return
    raise AssertionError(f"no broker connection named {connection_name!r}")
