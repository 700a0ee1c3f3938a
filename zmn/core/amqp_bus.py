"""The RabbitMQ bus: the same :class:`~zmn.core.bus.Bus` contract across management nodes.

Services do not change when a node moves from ``local://`` to ``amqp://``; only the transport
does. Topology (``<ns>.`` prefixes every name when a namespace is given):

* ``<service>.<nodeUuid>``  one queue per service per node. A request about resource R goes to
  the node the consistent-hash ring names for R (``Envelope.resource_uuid``), anything else to
  this node. Queues carry ``x-expires`` so those of a vanished node disappear by themselves.
* ``api.portal``            one durable queue shared by every node; the broker hands each API
  request to one consumer (load balancing). :meth:`AmqpBus.call_portal` puts a request on it,
  :meth:`AmqpBus.serve_portal` consumes it (the node passes requests to ``Node.execute``).
* ``zmn.events``            a topic exchange. ``/vm/state/change`` is routing key
  ``vm.state.change``; a subscription ``/vm/*/change`` binds ``vm.*.change`` and ``/vm/**``
  binds ``vm.#``. Each node has one ``events.<nodeUuid>`` queue bound with the union of its
  subscriptions; the broker narrows, :class:`~zmn.core.bus.Subscription` decides exactly.
  Local subscribers are called directly inside :meth:`AmqpBus.publish`, as on the local bus,
  and a node skips its own events when they come back from the broker. The queue holds at
  most ``events_queued`` events (``x-max-length``, oldest dropped first) and the node takes
  ``prefetch`` at a time, so a slow node never makes the broker or a publisher wait on it;
  API clients behind it have their own bounded queues (:mod:`zmn.outbox`).
* ``reply.<nodeUuid>``      replies, matched to waiting calls by correlation id.

Delivery: publisher confirms (a request counts as sent once the broker took it; ``mandatory``
turns a missing queue into an immediate error instead of a silent drop); manual acks, given
after the handler finished and its reply was published on the same channel, so a node that
dies mid-request leaves the request to be redelivered. A redelivered or retried request keeps
its message id, and the receiver keeps a bounded cache of recent ids -> replies (plus the ids
still running), so it answers again instead of running the handler twice. A caller whose
connection dropped before the broker confirmed its request publishes it again after the
reconnect and relies on that cache. The cache is per node: a request retried through
``api.portal`` may land on another node, so retries there need idempotent APIs (creates take
``resourceUuid``). Reconnection: :mod:`zmn.core.amqp_link`.

Why pika's ``AsyncioConnection`` on the node's loop rather than a ``BlockingConnection`` in an
I/O thread bridged with ``call_soon_threadsafe``: measured here (2 cores, RabbitMQ 3.10 on the
same machine, two connections in one process, an echo handler on the loop, 3,000 requests,
two runs each) the asyncio adapter did 990-1,150 round trips/s one at a time and about 2,050/s
with 20 in flight, the thread bridge 650-670/s and 1,500-1,560/s (a third run, under load 6:
430 against 230/s and 2,540 against 910/s). Every message crosses two threads in the bridge,
and the GIL makes the I/O thread a second contender, not a second core. One
thread also means no locks: every structure here is touched by the loop only.

This bus, confirms and acks included, against raw pika (BlockingConnection client and server,
no confirms, one request at a time), five interleaved runs of 2,000 calls on the same machine
(shared with other test runs, load 5-6 on 2 cores, hence below the 1,200/s of the environment
notes): the bus did 290-730 calls/s one at a time (median 509) and 1,270-1,710/s with 20 in
flight (median 1,677); raw pika did 290-690/s in one process (median 557) and 360-850/s in
two (median 711). CPU per round trip, both ends in one process: median 630 us for the bus one
at a time (250 us with 20 in flight), 612 us for raw pika. Joining pika's per-frame writes into
one send() was tried and dropped: no difference in an A/B run.
``tests/integration/test_amqp_bus.py::test_request_reply_rate`` prints the current figures.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pika

from zmn.api.errors import InternalError, NotFound, Timeout, Unavailable, ZmnError
from zmn.api.message import message_to_args
from zmn.core.amqp_link import AmqpLink, LinkDown
from zmn.core.bus import Bus, Dispatch, Envelope, Event, EventCallback, Principal, Subscription
from zmn.core.db import new_uuid
from zmn.core.fastsql import settle
from zmn.core.ring import HashRing

log = logging.getLogger("zmn.bus.amqp")

Decode = Callable[[str, dict[str, Any]], Any]
JSON = "application/json"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


@dataclass
class PortalRequest:
    """An API request taken from ``api.portal``: the raw arguments, decoded by the node."""

    api: str
    args: dict[str, Any]
    session: str | None = None
    principal: Principal | None = None
    id: str = ""


PortalHandler = Callable[[PortalRequest], Awaitable[Any]]


@dataclass
class _Call:
    future: asyncio.Future[bytes]
    target: str | None
    sent: bool = False  # a publish left this process: from now on the outcome is unknown

    def mark_sent(self) -> None:
        self.sent = True


def routing_key(path: str) -> str:
    """``/vm/state/change`` -> ``vm.state.change``; a dot inside a segment becomes ``_``."""
    return ".".join(p.replace(".", "_") for p in path.strip("/").split("/") if p)


def binding_key(pattern: str) -> str:
    """A topic binding that matches at least what the subscription pattern matches."""
    out = []
    for part in (p for p in pattern.strip("/").split("/") if p):
        if part == "**":
            out.append("#")
        elif "*" in part or "#" in part:
            out.append("*")
        else:
            out.append(part.replace(".", "_"))
    return ".".join(out)


def _reply(ok: bool, value: Any) -> bytes:
    try:
        return _encode({"ok": True, "result": value} if ok else {"ok": False, "error": value})
    except (TypeError, msgspec.EncodeError) as exc:
        err = InternalError(f"reply cannot be encoded: {exc}", code="BUS.BAD_REPLY")
        return _encode({"ok": False, "error": err.to_wire()})


class AmqpBus(Bus):
    """A :class:`Bus` over RabbitMQ; see the module docstring for topology and guarantees."""

    name = "amqp"

    def __init__(
        self,
        url: str,
        node_uuid: str,
        decode: Decode,
        *,
        namespace: str = "",
        ring: HashRing | None = None,
        prefetch: int = 100,
        dedup_size: int = 10_000,
        dedup_bytes: int = 64 * 1024 * 1024,
        queue_expires: float = 60.0,
        backoff: float = 0.2,
        backoff_max: float = 10.0,
        start_timeout: float = 30.0,
        direct_local: bool = True,
        outbox_size: int = 10_000,
        events_queued: int = 10_000,
    ) -> None:
        self.node_uuid = node_uuid
        self.ring = ring
        self.direct_local = direct_local  # calls to this node skip the broker, as on LocalBus
        self._decode_message = decode
        self.prefix = prefix = f"{namespace}." if namespace else ""
        self.portal_queue = f"{prefix}api.portal"
        self.exchange = f"{prefix}zmn.events"
        self.reply_queue = f"{prefix}reply.{node_uuid}"
        self.event_queue = f"{prefix}events.{node_uuid}"
        self.link = AmqpLink(
            url,
            f"zmn {prefix}{node_uuid}",
            self._on_channel,
            prefetch=prefetch,
            backoff=backoff,
            backoff_max=backoff_max,
        )
        self._queue_args = {"x-expires": int(queue_expires * 1000)}
        # a node that falls behind loses its oldest events at the broker instead of making
        # it hold them without bound (which ends in a memory alarm that blocks every
        # publisher); what it took in waits for delivery in at most ``prefetch`` messages
        self._event_queue_args = {
            **self._queue_args,
            "x-max-length": events_queued,
            "x-overflow": "drop-head",
        }
        self._start_timeout = start_timeout
        self._services: dict[str, Dispatch] = {}
        self._portal: PortalHandler | None = None
        self._subs: list[Subscription] = []
        self._bindings: dict[str, int] = {}  # binding key -> subscriptions needing it
        self._consumers: list[str] = []  # request consumers, cancelled first at stop
        self._calls: dict[str, _Call] = {}  # correlation id -> waiting call
        self._dedup: OrderedDict[str, bytes] = OrderedDict()
        self._dedup_limits = (dedup_size, dedup_bytes)
        self._dedup_bytes = 0
        self._running_ids: dict[str, asyncio.Future[bytes]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._topology: set[asyncio.Task[None]] = set()
        self._events: asyncio.Queue[tuple[Any, int, bytes]] = asyncio.Queue()
        self._outbox: deque[tuple[str, bytes]] = deque(maxlen=outbox_size)
        self._running = False
        self._worker: asyncio.Task[None] | None = None
        self.counters = dict.fromkeys(("sent", "delivered", "published", "deduped"), 0)
        self.counters["eventsDropped"] = 0

    # ------------------------------------------------------------------ names and routing

    def service_queue(self, service: str, node_uuid: str) -> str:
        return f"{self.prefix}{service}.{node_uuid}"

    def owner_of(self, envelope: Envelope) -> str:
        """The node a request goes to: the ring's owner of its resource, else this node."""
        if envelope.resource_uuid and self.ring is not None and len(self.ring):
            return self.ring.owner(envelope.resource_uuid)
        return self.node_uuid

    @property
    def connected(self) -> bool:
        return self.link.ready.is_set()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._worker = asyncio.get_running_loop().create_task(self._event_worker())
        self.link.start()
        try:
            await asyncio.wait_for(self.link.ready.wait(), self._start_timeout)
        except TimeoutError:
            await self.stop()
            raise Unavailable(
                f"message broker unreachable after {self._start_timeout:g}s:"
                f" {self.link.last_error}",
                code="BUS.DISCONNECTED",
            ) from None

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking requests, let running handlers reply, then leave the broker."""
        if not self._running:
            return
        self._running = False
        up = self.link.ready.is_set()
        if up:
            cancels = [self.link.op("basic_cancel", tag) for tag in self._consumers]
            await asyncio.gather(*cancels, return_exceptions=True)
        if self._handlers:
            _done, late = await asyncio.wait(list(self._handlers), timeout=grace)
            # Left unacked: a portal request goes back to api.portal for another node; one
            # on this node's own queue goes with the queue, and its caller times out.
            for task in late:
                task.cancel()
        for call in self._calls.values():
            if not call.future.done():
                outcome = "; outcome unknown" if call.sent else ""
                call.future.set_exception(
                    Unavailable(
                        f"the message bus stopped before the reply{outcome}", code="BUS.STOPPED"
                    )
                )
        if up:  # a stopped node's queues go now rather than at x-expires
            own = [self.service_queue(s, self.node_uuid) for s in self._services]
            queues = [*own, self.reply_queue, self.event_queue]
            deletes = [self.link.op("queue_delete", q) for q in queues]
            await asyncio.gather(*deletes, return_exceptions=True)
        await self.link.close()
        if self._worker is not None:
            self._worker.cancel()
        await asyncio.gather(
            *filter(None, [self._worker]), *self._handlers, *self._topology, return_exceptions=True
        )

    async def _on_channel(self) -> None:
        """Declare the topology and start consuming on a new channel (start and reconnects)."""
        op = self.link.op
        await op("exchange_declare", self.exchange, "topic", durable=True)
        await op("queue_declare", self.reply_queue, arguments=self._queue_args)
        await op("basic_consume", self.reply_queue, self._on_reply)
        await op("queue_declare", self.event_queue, arguments=self._event_queue_args)
        for key in list(self._bindings):
            await op("queue_bind", self.event_queue, self.exchange, key)
        await op("basic_consume", self.event_queue, self._on_event)
        await op("queue_declare", self.portal_queue, durable=True)
        self._consumers = []
        for service in list(self._services):
            await self._consume_service(service)
        if self._portal is not None:
            await self._consume(self.portal_queue, None)
        if self._outbox:
            self._spawn_topology(self._flush_outbox())

    async def _consume_service(self, service: str) -> None:
        queue = self.service_queue(service, self.node_uuid)
        await self.link.op("queue_declare", queue, arguments=self._queue_args)
        await self._consume(queue, service)

    async def _consume(self, queue: str, service: str | None) -> None:
        """Consume requests; returns once the broker registered the consumer (ConsumeOk)."""
        tag = f"{queue}.{secrets.token_hex(4)}"
        self._consumers.append(tag)
        await self.link.op("basic_consume", queue, self._on_request(service), consumer_tag=tag)

    def _spawn_topology(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except LinkDown:
                pass  # redone from the current state on reconnect
            except Exception:
                log.exception("bus topology change failed")

        task = asyncio.get_running_loop().create_task(run())
        self._topology.add(task)
        task.add_done_callback(self._topology.discard)

    async def settle(self) -> None:
        """Wait until pending binds, unbinds and consumer changes reached the broker."""
        while self._topology:
            await asyncio.gather(*list(self._topology), return_exceptions=True)

    # ------------------------------------------------------------------ requests: caller side

    def serve(self, service: str, dispatch: Dispatch) -> None:
        new = service not in self._services
        self._services[service] = dispatch
        if new and self.link.ready.is_set():
            self._spawn_topology(self._consume_service(service))

    def serve_portal(self, handler: PortalHandler) -> None:
        """Take API requests from the shared ``api.portal`` queue and hand them to ``handler``."""
        first = self._portal is None
        self._portal = handler
        if first and self.link.ready.is_set():
            self._spawn_topology(self._consume(self.portal_queue, None))

    async def call(
        self,
        service: str,
        envelope: Envelope,
        timeout: float | None = None,
        *,
        node: str | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Send to ``service`` on the owner node (or ``node``); ``request_id`` dedups retries."""
        settle()  # another node acts on what this turn wrote: commit it first
        if not self._running:
            raise Unavailable("the message bus is stopped", code="BUS.STOPPED")
        target = node or self.owner_of(envelope)
        if target == self.node_uuid:
            if service not in self._services:
                raise NotFound(
                    f"no service {service!r} on this node (disabled or not installed)",
                    code="BUS.NO_SERVICE",
                    service=service,
                )
            if self.direct_local:
                return await self._call_local(service, envelope, timeout)
        msg = envelope.message
        body: dict[str, Any] = {
            "api": envelope.api,
            "principal": envelope.principal,  # msgspec encodes the dataclass as an object
            "id": envelope.id,
            "job": envelope.job_uuid,
            "resource": envelope.resource_uuid,
            "deadline": envelope.deadline,
        }
        if isinstance(msg, msgspec.Struct):
            body["args"] = message_to_args(msg)  # type: ignore[arg-type]
        else:
            body["raw"] = msg  # plain data (tests, ad-hoc internal messages)
        label = f"{envelope.api} to {service} on node {target}"
        queue = self.service_queue(service, target)
        return await self._request(queue, _encode(body), timeout, label, target, request_id)

    async def call_portal(
        self,
        api: str,
        args: dict[str, Any],
        *,
        session: str | None = None,
        principal: Principal | None = None,
        request_id: str = "",
        timeout: float | None = None,
        message_id: str | None = None,
    ) -> Any:
        """Put an API request on ``api.portal``; whichever node takes it runs it and replies."""
        body = {"api": api, "args": args, "session": session, "principal": principal}
        body["id"] = request_id
        label = f"{api} through {self.portal_queue}"
        return await self._request(
            self.portal_queue, _encode(body), timeout, label, None, message_id
        )

    async def _call_local(self, service: str, envelope: Envelope, timeout: float | None) -> Any:
        self.counters["delivered"] += 1
        dispatch = self._services[service]
        if timeout is None:
            return await dispatch(envelope)
        try:
            return await asyncio.wait_for(dispatch(envelope), timeout)
        except TimeoutError:
            raise Timeout(
                f"{envelope.api} to {service} got no reply in {timeout:g}s; outcome unknown",
                code="BUS.TIMEOUT",
            ) from None

    async def _request(
        self,
        queue: str,
        body: bytes,
        timeout: float | None,
        label: str,
        target: str | None,
        request_id: str | None,
    ) -> Any:
        if not self._running:
            raise Unavailable("the message bus is stopped", code="BUS.STOPPED")
        correlation = new_uuid()
        call = _Call(asyncio.get_running_loop().create_future(), target)
        props = pika.BasicProperties(
            content_type=JSON,
            correlation_id=correlation,
            message_id=request_id or correlation,
            reply_to=self.reply_queue,
            # The broker drops a request nobody took before the caller gave up on it.
            expiration=str(max(1, int(timeout * 1000))) if timeout else None,
        )
        self._calls[correlation] = call
        self.counters["sent"] += 1
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.link.ready.wait()
                    try:
                        routed = await self.link.publish(
                            "", queue, body, props, mandatory=True, on_sent=call.mark_sent
                        )
                        break
                    except LinkDown:
                        continue  # same message id again: the receiver's cache absorbs a copy
                if not routed:
                    raise Unavailable(
                        f"{label}: no queue {queue} (the node is gone or does not run it)",
                        code="BUS.UNROUTABLE",
                    )
                reply = await call.future
        except TimeoutError:
            if call.sent:
                raise Timeout(
                    f"{label} got no reply in {timeout:g}s; outcome unknown", code="BUS.TIMEOUT"
                ) from None
            raise Unavailable(
                f"{label} not sent in {timeout:g}s: the message broker is unreachable"
                f" ({self.link.last_error})",
                code="BUS.DISCONNECTED",
            ) from None
        finally:
            self._calls.pop(correlation, None)
        data = _decode(reply)
        if data.get("ok"):
            return data.get("result")
        raise ZmnError.from_wire(data.get("error") or {})

    def _on_reply(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        call = self._calls.get(props.correlation_id)
        if call is not None and not call.future.done():
            call.future.set_result(body)

    def fail_calls_to(self, node_uuid: str) -> int:
        """Fail the calls waiting on a node that left the cluster (membership's on_leave)."""
        failed = 0
        for call in self._calls.values():
            if call.target == node_uuid and not call.future.done():
                call.future.set_exception(
                    Unavailable(
                        f"node {node_uuid} left the cluster before replying; outcome unknown",
                        code="BUS.NODE_LEFT",
                    )
                )
                failed += 1
        return failed

    # ------------------------------------------------------------------ requests: receiver side

    def _on_request(self, service: str | None) -> Callable[[Any, Any, Any, bytes], None]:
        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            key = f"{service or 'portal'}:{props.message_id or props.correlation_id}"
            run = self._run_portal if service is None else self._run_service
            task = asyncio.get_running_loop().create_task(
                self._handle(ch, method.delivery_tag, props, key, lambda: run(service, body))
            )
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

        return on_message

    async def _handle(
        self, ch: Any, tag: int, props: Any, key: str, work: Callable[[], Awaitable[bytes]]
    ) -> None:
        self.counters["delivered"] += 1
        try:
            cached = self._dedup.get(key)
            running = self._running_ids.get(key)
            if cached is not None:
                self.counters["deduped"] += 1
                reply = cached
            elif running is not None:
                self.counters["deduped"] += 1
                reply = await asyncio.shield(running)
            else:
                fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
                self._running_ids[key] = fut
                try:
                    reply = await work()
                    fut.set_result(reply)
                    self._remember(key, reply)
                finally:
                    self._running_ids.pop(key, None)
                    if not fut.done():
                        fut.cancel()
            if props.reply_to:
                reply_props = pika.BasicProperties(
                    content_type=JSON, correlation_id=props.correlation_id
                )
                # No wait for the confirm: the ack follows the reply on the same channel, so
                # the broker has the reply before it forgets the request.
                await self.link.publish("", props.reply_to, reply, reply_props, wait=False)
            if self.link.is_current(ch):
                ch.basic_ack(tag)
        except LinkDown:
            pass  # unacked: the broker redelivers the request and the cache answers it
        except Exception:
            log.exception("bus request handling failed")

    def _remember(self, key: str, reply: bytes) -> None:
        self._dedup[key] = reply
        self._dedup_bytes += len(reply)
        count, size = self._dedup_limits
        while self._dedup and (len(self._dedup) > count or self._dedup_bytes > size):
            _, old = self._dedup.popitem(last=False)
            self._dedup_bytes -= len(old)

    async def _run_service(self, service: str | None, body: bytes) -> bytes:
        try:
            data = _decode(body)
            dispatch = self._services.get(service or "")
            if dispatch is None:
                raise NotFound(
                    f"no service {service!r} on node {self.node_uuid}", code="BUS.NO_SERVICE"
                )
            api = data["api"]
            message = data["raw"] if "raw" in data else self._decode_message(api, data["args"])
            env = Envelope(
                api,
                message,
                Principal(**data["principal"]),
                id=data.get("id") or "",
                job_uuid=data.get("job"),
                resource_uuid=data.get("resource"),
                deadline=data.get("deadline"),
            )
            return _reply(True, await dispatch(env))
        except ZmnError as exc:
            return _reply(False, exc.to_wire())
        except Exception as exc:
            log.exception("handler for a bus request to %s failed", service)
            return _reply(False, InternalError(f"{type(exc).__name__}: {exc}").to_wire())

    async def _run_portal(self, _service: str | None, body: bytes) -> bytes:
        try:
            data = _decode(body)
            handler = self._portal
            if handler is None:
                raise Unavailable("this node does not serve api.portal", code="BUS.NO_PORTAL")
            principal = data.get("principal")
            req = PortalRequest(
                api=data["api"],
                args=data.get("args") or {},
                session=data.get("session"),
                principal=Principal(**principal) if principal else None,
                id=data.get("id") or "",
            )
            return _reply(True, await handler(req))
        except ZmnError as exc:
            return _reply(False, exc.to_wire())
        except Exception as exc:
            log.exception("api.portal request failed")
            return _reply(False, InternalError(f"{type(exc).__name__}: {exc}").to_wire())

    # ------------------------------------------------------------------ events

    async def publish(self, path: str, data: dict[str, Any]) -> None:
        self.counters["published"] += 1
        settle()  # other nodes read what this turn wrote when they hear of it
        event = Event(path, data)
        await self._deliver(event)
        body = _encode({"path": path, "data": data, "time": event.time, "origin": self.node_uuid})
        key = routing_key(path)
        if self.link.ready.is_set():
            try:
                await self.link.publish(self.exchange, key, body, _EVENT_PROPS)
                return
            except LinkDown:
                pass
        if len(self._outbox) == self._outbox.maxlen:
            self.counters["eventsDropped"] += 1
        self._outbox.append((key, body))  # sent after the reconnect

    async def _flush_outbox(self) -> None:
        while self._outbox:
            key, body = self._outbox[0]
            await self.link.publish(self.exchange, key, body, _EVENT_PROPS)
            if self._outbox and self._outbox[0][1] is body:
                self._outbox.popleft()

    async def _deliver(self, event: Event) -> None:
        for sub in list(self._subs):
            if sub.matches(event.path):
                try:
                    result = sub.callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("event subscriber for %s failed on %s", sub.pattern, event.path)

    def _on_event(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._events.put_nowait((ch, method.delivery_tag, body))

    async def _event_worker(self) -> None:
        """Deliver broker events one at a time, in arrival order, then ack them."""
        while True:
            ch, tag, body = await self._events.get()
            try:
                data = _decode(body)
                if data.get("origin") != self.node_uuid:
                    await self._deliver(Event(data["path"], data.get("data") or {}, data["time"]))
            except Exception:
                log.exception("bad event from the broker")
            if self.link.is_current(ch):
                ch.basic_ack(tag)

    def subscribe(self, pattern: str, callback: EventCallback) -> Subscription:
        sub = Subscription(self, pattern, callback)
        self._subs.append(sub)
        key = binding_key(pattern)
        self._bindings[key] = self._bindings.get(key, 0) + 1
        if self._bindings[key] == 1 and self.link.ready.is_set():
            self._spawn_topology(self.link.op("queue_bind", self.event_queue, self.exchange, key))
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription not in self._subs:
            return
        self._subs.remove(subscription)
        key = binding_key(subscription.pattern)
        self._bindings[key] -= 1
        if self._bindings[key] == 0:
            del self._bindings[key]
            if self.link.ready.is_set():
                op = self.link.op("queue_unbind", self.event_queue, self.exchange, key)
                self._spawn_topology(op)

    # ------------------------------------------------------------------ status

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "node": self.node_uuid,
            "connected": self.link.ready.is_set(),
            "reconnects": self.link.reconnects,
            "lastError": self.link.last_error,
            "inFlight": len(self._calls),
            "handling": len(self._handlers),
            **self.counters,
            "dedupEntries": len(self._dedup),
            "eventsQueued": len(self._outbox),
            "subscriptions": len(self._subs),
            "services": sorted(self._services),
            "servesPortal": self._portal is not None,
        }


_EVENT_PROPS = pika.BasicProperties(content_type=JSON)
