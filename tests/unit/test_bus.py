"""The in-process message bus: request/reply, errors, timeouts and event subscriptions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from zmn.api.errors import Conflict, NotFound, Timeout, Unavailable
from zmn.core.bus import Envelope, Event, LocalBus, Principal, compile_pattern

ADMIN = Principal("0" * 32, "admin", "SystemAdmin")


def env(api: str = "Echo", message: Any = None) -> Envelope:
    return Envelope(api, message, ADMIN, id="r1")


@pytest.fixture
async def bus() -> LocalBus:
    b = LocalBus()
    await b.start()
    return b


async def test_request_reply_reaches_the_named_service(bus: LocalBus) -> None:
    seen: list[Envelope] = []

    async def echo(e: Envelope) -> Any:
        seen.append(e)
        return {"echo": e.message, "api": e.api}

    async def other(e: Envelope) -> Any:
        return "other"

    bus.serve("echo", echo)
    bus.serve("other", other)
    assert await bus.call("echo", env("Echo", 42)) == {"echo": 42, "api": "Echo"}
    assert await bus.call("other", env()) == "other"
    assert len(seen) == 1
    assert seen[0].principal is ADMIN
    assert bus.stats()["delivered"] == 2
    assert bus.stats()["inFlight"] == 0


async def test_handler_errors_propagate_unchanged(bus: LocalBus) -> None:
    async def fail(e: Envelope) -> Any:
        raise Conflict("busy", code="THING.BUSY", field="uuid")

    bus.serve("svc", fail)
    with pytest.raises(Conflict) as info:
        await bus.call("svc", env())
    assert info.value.code == "THING.BUSY"
    assert info.value.field == "uuid"
    assert bus.in_flight == 0


async def test_unknown_service_is_no_service(bus: LocalBus) -> None:
    with pytest.raises(NotFound) as info:
        await bus.call("nosuch", env())
    assert info.value.code == "BUS.NO_SERVICE"
    assert info.value.details["service"] == "nosuch"


async def test_stopped_bus_is_unavailable() -> None:
    b = LocalBus()
    b.serve("svc", lambda e: asyncio.sleep(0))
    with pytest.raises(Unavailable) as info:
        await b.call("svc", env())
    assert info.value.code == "BUS.STOPPED"
    assert info.value.retryable


async def test_timeout_raises_timeout_and_cancels_the_handler(bus: LocalBus) -> None:
    cancelled = asyncio.Event()

    async def slow(e: Envelope) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.serve("slow", slow)
    with pytest.raises(Timeout) as info:
        await bus.call("slow", env("Slow"), timeout=0.05)
    assert info.value.code == "BUS.TIMEOUT"
    assert "Slow" in info.value.message
    assert cancelled.is_set()
    assert bus.in_flight == 0


async def test_fast_reply_within_timeout(bus: LocalBus) -> None:
    async def fast(e: Envelope) -> Any:
        return 1

    bus.serve("fast", fast)
    assert await bus.call("fast", env(), timeout=5) == 1


async def test_publish_matches_patterns(bus: LocalBus) -> None:
    got: dict[str, list[str]] = {}

    def recorder(name: str) -> Any:
        def cb(event: Event) -> None:
            got.setdefault(name, []).append(event.path)

        return cb

    async def async_cb(event: Event) -> None:
        got.setdefault("async", []).append(event.path)

    for pattern in ("/vm/*/change", "/vm/**", "/**", "/host/state/change", "/*"):
        bus.subscribe(pattern, recorder(pattern))
    bus.subscribe("/vm/state/*", async_cb)
    paths = [
        "/vm/state/change",
        "/vm",
        "/vm/a/b/c",
        "/host/state/change",
        "/host",
        "/vmx/state/change",
    ]
    for p in paths:
        await bus.publish(p, {"p": p})
    assert got["/vm/*/change"] == ["/vm/state/change"]
    assert got["/vm/**"] == ["/vm/state/change", "/vm", "/vm/a/b/c"]
    assert got["/**"] == paths
    assert got["/host/state/change"] == ["/host/state/change"]
    assert got["/*"] == ["/vm", "/host"]
    assert got["async"] == ["/vm/state/change"]
    assert bus.stats()["published"] == len(paths)


def test_compile_pattern_segments() -> None:
    star = compile_pattern("/a/*/c")
    assert star.match("/a/b/c")
    assert not star.match("/a/b/x/c")  # * is one segment
    assert not star.match("/a//c")
    assert compile_pattern("a/b").match("/a/b")  # leading slash optional in patterns
    assert not compile_pattern("/a.b").match("/axb")  # literal segments are escaped


async def test_event_data_and_unsubscribe(bus: LocalBus) -> None:
    events: list[Event] = []
    sub = bus.subscribe("/job/**", events.append)
    await bus.publish("/job/1", {"progress": 5})
    sub.cancel()
    await bus.publish("/job/2", {"progress": 6})
    assert [(e.path, e.data) for e in events] == [("/job/1", {"progress": 5})]
    assert events[0].to_wire()["type"] == "event"
    assert bus.stats()["subscriptions"] == 0
    sub.cancel()  # cancelling twice is harmless


async def test_failing_subscriber_does_not_stop_the_others(bus: LocalBus) -> None:
    got: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe("/x", broken)
    bus.subscribe("/x", lambda e: got.append(e.path))
    await bus.publish("/x", {})
    assert got == ["/x"]


async def test_subscriber_may_unsubscribe_itself_during_publish(bus: LocalBus) -> None:
    calls: list[str] = []
    holder: dict[str, Any] = {}

    def once(event: Event) -> None:
        calls.append(event.path)
        holder["sub"].cancel()

    holder["sub"] = bus.subscribe("/**", once)
    await bus.publish("/a", {})
    await bus.publish("/b", {})
    assert calls == ["/a"]
