"""The message bus: request/reply to services and published events.

Services talk to each other only through a :class:`Bus`. The embedded default,
:class:`LocalBus`, delivers in-process; a RabbitMQ bus implements the same interface (a queue
per service per node, an ``api.portal`` queue, a topic exchange for events) without services
changing.

Event paths are slash-separated (``/vm/state/change``). Subscription patterns match a path
segment by segment: ``*`` matches one segment, a trailing ``**`` matches the rest.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from zmn.api.errors import NotFound, Timeout, Unavailable

log = logging.getLogger("zmn.bus")


@dataclass
class Principal:
    """Who a message acts for."""

    accountUuid: str
    accountName: str
    accountType: str  # "SystemAdmin" or "Normal"
    userUuid: str | None = None
    sessionUuid: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.accountType == "SystemAdmin"


@dataclass
class Envelope:
    """A request to a service: an API or internal message and who sends it."""

    api: str
    message: Any
    principal: Principal
    id: str = ""
    job_uuid: str | None = None
    resource_uuid: str | None = None  # routing key for the ring (scale-out)
    deadline: float | None = None


@dataclass
class Event:
    path: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)

    def to_wire(self) -> dict[str, Any]:
        return {"type": "event", "path": self.path, "data": self.data, "time": self.time}


Dispatch = Callable[[Envelope], Awaitable[Any]]
EventCallback = Callable[[Event], Awaitable[None] | None]


class Subscription:
    """Handle returned by :meth:`Bus.subscribe`; ``cancel()`` ends it."""

    def __init__(self, bus: Bus, pattern: str, callback: EventCallback) -> None:
        self.bus = bus
        self.pattern = pattern
        self.callback = callback
        self.regex = compile_pattern(pattern)

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None

    def cancel(self) -> None:
        self.bus.unsubscribe(self)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    parts = [p for p in pattern.strip("/").split("/") if p]
    regex = ""
    for i, part in enumerate(parts):
        if part == "**" and i == len(parts) - 1:
            regex += "(/.*)?"
        elif part == "*":
            regex += "/[^/]+"
        else:
            regex += "/" + re.escape(part)
    return re.compile("^" + regex + "$")


class Bus(ABC):
    """What every bus backend implements."""

    name = "abstract"

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def serve(self, service: str, dispatch: Dispatch) -> None:
        """Deliver requests addressed to ``service`` to ``dispatch``."""

    @abstractmethod
    async def call(self, service: str, envelope: Envelope, timeout: float | None = None) -> Any:
        """Send a request and wait for the reply (the handler's return value or error)."""

    @abstractmethod
    async def publish(self, path: str, data: dict[str, Any]) -> None: ...

    @abstractmethod
    def subscribe(self, pattern: str, callback: EventCallback) -> Subscription: ...

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    def stats(self) -> dict[str, Any]:
        return {}


_REACH_PATHS = 1024  # event paths whose subscriber lists LocalBus keeps


class LocalBus(Bus):
    """In-process bus: a call is a direct await of the service's dispatcher."""

    name = "local"

    def __init__(self) -> None:
        self._services: dict[str, Dispatch] = {}
        self._subs: list[Subscription] = []
        # path -> the subscriptions it reaches, in subscription order (every event path is
        # matched once, not against every pattern at every publish); emptied when they change
        self._reach: dict[str, list[Subscription]] = {}
        self.in_flight = 0
        self.delivered = 0
        self.published = 0
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        self._running = False

    def serve(self, service: str, dispatch: Dispatch) -> None:
        self._services[service] = dispatch

    async def call(self, service: str, envelope: Envelope, timeout: float | None = None) -> Any:
        if not self._running:
            raise Unavailable("the message bus is stopped", code="BUS.STOPPED")
        dispatch = self._services.get(service)
        if dispatch is None:
            raise NotFound(
                f"no service {service!r} on this node (disabled or not installed)",
                code="BUS.NO_SERVICE",
                service=service,
            )
        self.in_flight += 1
        try:
            if timeout is None:
                return await dispatch(envelope)
            try:
                return await asyncio.wait_for(dispatch(envelope), timeout)
            except TimeoutError:
                raise Timeout(
                    f"{envelope.api} to {service} got no reply in {timeout:g}s; outcome unknown",
                    code="BUS.TIMEOUT",
                ) from None
        finally:
            self.in_flight -= 1
            self.delivered += 1

    async def publish(self, path: str, data: dict[str, Any]) -> None:
        self.published += 1
        reached = self._reach.get(path)
        if reached is None:
            reached = [sub for sub in self._subs if sub.matches(path)]
            if len(self._reach) >= _REACH_PATHS:  # per-job paths: bounded, not per job forever
                self._reach.clear()
            self._reach[path] = reached
        if not reached:
            return
        event = Event(path, data)
        for sub in reached:  # a snapshot: the cached lists are replaced, never changed
            try:
                result = sub.callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event subscriber for %s failed on %s", sub.pattern, path)

    def subscribe(self, pattern: str, callback: EventCallback) -> Subscription:
        sub = Subscription(self, pattern, callback)
        self._subs.append(sub)
        self._reach = {}
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subs:
            self._subs.remove(subscription)
            self._reach = {}

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "inFlight": self.in_flight,
            "delivered": self.delivered,
            "published": self.published,
            "subscriptions": len(self._subs),
        }
