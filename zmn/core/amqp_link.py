"""One RabbitMQ connection and channel kept alive for :mod:`zmn.core.amqp_bus`.

The link owns what is about the transport, so that the bus can be about messages: connecting,
reconnecting with full-jitter exponential backoff (a restarted broker is not hit by every node
at the same instant), publisher confirms and returns, and broker RPCs as futures. Everything
runs on the event loop (pika's ``AsyncioConnection``), so nothing here needs a lock.

Every new channel is handed to ``on_channel``, which declares the topology and starts the
consumers again; only then is the link ``ready``. When the channel or connection goes away,
every pending RPC and unconfirmed publish fails with :class:`LinkDown`: their callers decide
whether to try again on the next channel.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from zmn.api.errors import Unavailable

log = logging.getLogger("zmn.bus.amqp")

# pika reports every failed connect and lost socket at ERROR with a stack; the link reports
# the same events once, as warnings with the reason, and keeps reconnecting.
logging.getLogger("pika.adapters").setLevel(logging.CRITICAL)


class LinkDown(Exception):
    """The channel went away before the broker answered."""


class AmqpLink:
    """A self-healing connection + channel in confirm mode."""

    def __init__(
        self,
        url: str,
        name: str,
        on_channel: Callable[[], Awaitable[None]],
        *,
        prefetch: int = 100,
        backoff: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        self.url = url
        self.name = name
        self.on_channel = on_channel
        self.prefetch = prefetch
        self.backoff = (backoff, backoff_max)
        self.ready = asyncio.Event()
        self.channel: Any = None  # the current channel, once in confirm mode
        self.reconnects = 0
        self.last_error = ""
        self._conn: AsyncioConnection | None = None
        self._confirms: dict[int, asyncio.Future[None] | None] = {}  # None: nobody waits
        self._returned: set[str] = set()
        self._next_tag = 0
        self._ops: set[asyncio.Future[Any]] = set()
        self._running = False
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self._running = True
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Close the connection (AMQP handshake included) and stop reconnecting."""
        self._running = False
        _close(self._conn)
        task = self._task
        if task is not None:
            await asyncio.wait([task], timeout=5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def is_current(self, ch: Any) -> bool:
        """Whether a delivery's channel is still the live one (its delivery tags still valid)."""
        return ch is not None and ch is self.channel and ch.is_open

    def _delay(self, attempt: int) -> float:
        base, cap = self.backoff
        return random.uniform(base / 2, min(cap, base * 2**attempt))  # noqa: S311 - retry jitter, not a secret

    async def _loop(self) -> None:
        attempt = 0
        while self._running:
            try:
                closed = await self._connect()
                attempt = 0
                log.info("bus connected to %s as %s", _redact(self.url), self.name)
                reason = await closed
                self.last_error = str(reason)
                if self._running:
                    self.reconnects += 1
                    log.warning("bus connection lost (%s); reconnecting", reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("bus connect failed (attempt %d): %s", attempt + 1, self.last_error)
            finally:
                self._down(LinkDown("connection lost"))
            if self._running:
                await asyncio.sleep(self._delay(attempt))
                attempt += 1

    async def _connect(self) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()
        closed: asyncio.Future[Any] = loop.create_future()

        def on_open_error(conn: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(LinkDown(repr(exc)))

        def on_close(conn: Any, exc: BaseException) -> None:
            on_open_error(conn, exc)
            self._down(exc)
            if not closed.done():
                closed.set_result(exc)

        params = pika.URLParameters(self.url)
        params.client_properties = {"connection_name": self.name}
        conn = AsyncioConnection(
            params, _resolver(opened), on_open_error, on_close, custom_ioloop=loop
        )
        self._conn = conn
        try:
            await asyncio.wait_for(opened, 15)
            channel_open: asyncio.Future[Any] = loop.create_future()
            conn.channel(on_open_callback=_resolver(channel_open))
            ch = await asyncio.wait_for(channel_open, 15)
            ch.add_on_close_callback(self._channel_closed)
            ch.add_on_return_callback(self._on_return)
            self.channel, self._next_tag = ch, 0
            self._returned.clear()
            await self.op("confirm_delivery", self._on_confirm)
            await self.op("basic_qos", prefetch_count=self.prefetch)
            await self.on_channel()
        except BaseException:
            _close(conn)
            raise
        self.ready.set()
        return closed

    def _down(self, exc: BaseException) -> None:
        """Fail broker operations and unconfirmed publishes of the channel that went away."""
        self.ready.clear()
        self.channel = None
        err = exc if isinstance(exc, LinkDown) else LinkDown(str(exc))
        pending = [*self._ops, *self._confirms.values()]
        self._ops.clear()
        self._confirms.clear()
        for fut in pending:
            if fut is not None and not fut.done():
                fut.set_exception(err)

    def _channel_closed(self, ch: Any, exc: BaseException) -> None:
        if ch is not self.channel:
            return
        if self._running:
            log.warning("bus channel closed: %s", exc)
        self._down(exc)
        _close(self._conn)  # rebuild connection and channel together, from scratch

    # ------------------------------------------------------------------ operations

    def op(self, method: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """``channel.<method>(*args, callback=...)`` as a future; LinkDown if the channel goes."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.add(fut)
        fut.add_done_callback(self._ops.discard)
        try:
            if self.channel is None:
                raise LinkDown("not connected")
            getattr(self.channel, method)(*args, callback=_resolver(fut), **kwargs)
        except Exception as exc:  # pika raises when the channel is already closed
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, LinkDown) else LinkDown(str(exc)))
        return fut

    async def publish(
        self,
        exchange: str,
        key: str,
        body: bytes,
        props: pika.BasicProperties,
        *,
        mandatory: bool = False,
        wait: bool = True,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        """Publish and wait for the broker's confirm (unless ``wait`` is false).

        Returns False when a ``mandatory`` message (identified by its correlation id) came
        back unroutable: the broker sends the return before the confirm.
        """
        ch = self.channel  # set once in confirm mode, even before ``ready`` (replies at setup)
        if ch is None or not ch.is_open:
            raise LinkDown("not connected")
        fut = asyncio.get_running_loop().create_future() if wait else None
        self._next_tag += 1
        self._confirms[self._next_tag] = fut
        try:
            ch.basic_publish(exchange, key, body, props, mandatory=mandatory)
        except Exception as exc:
            self._confirms.pop(self._next_tag, None)
            raise LinkDown(str(exc)) from None
        if on_sent is not None:
            on_sent()
        if fut is None:
            return True
        await fut
        if mandatory and props.correlation_id in self._returned:
            self._returned.discard(props.correlation_id)
            return False
        return True

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag, ok = method.delivery_tag, isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self._confirms if t <= tag] if method.multiple else [tag]
        for t in tags:
            fut = self._confirms.pop(t, None)
            if fut is None or fut.done():
                continue
            if ok:
                fut.set_result(None)
            else:
                fut.set_exception(
                    Unavailable("the message broker refused a message", code="BUS.NACKED")
                )

    def _on_return(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        if props.correlation_id:
            self._returned.add(props.correlation_id)


def _resolver(fut: asyncio.Future[Any]) -> Callable[[Any], None]:
    """A pika callback resolving ``fut``, harmless if it is already done (timed out, failed)."""

    def resolve(value: Any) -> None:
        if not fut.done():
            fut.set_result(value)

    return resolve


def _close(conn: AsyncioConnection | None) -> None:
    if conn is None or conn.is_closing or conn.is_closed:
        return
    try:
        conn.close()
    except Exception as exc:  # a half-dead connection may fail to write its Close frame
        log.debug("closing the bus connection failed: %s", exc)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
