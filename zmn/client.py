"""The Python client of the message API, used by zcli, ztui, tests and scripts.

It imports only the API contract (no SQLAlchemy, no server code), so commands start fast.

Endpoints: ``unix:/path/zmn.sock``, ``tcp://HOST:PORT``, ``tls://HOST:PORT``. The default is
``$ZMN_ENDPOINT``, else the socket in ``$ZMN_HOME`` (default ``~/.local/share/zmn``).

    with Client() as c:
        zone = c.call("CreateZone", {"name": "z1"})["inventory"]
"""

from __future__ import annotations

import itertools
import os
import time

from zmn.api.errors import Unavailable, ZmnError
from zmn.api.wire import encode, encode_std, read_frame, read_frame_sync
from zmn.home import default_socket_endpoint, home_str

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # asyncio, ssl and pathlib are imported where used: cold CLI commands
    import asyncio  # skip them (the blocking client also frames with json, not msgspec)
    import ssl
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    EventCallback = Callable[[dict[str, Any]], None]


# a connection younger than this (seconds) cannot have been closed by the node as idle: its
# first request goes without the check (and a cold zcli without importing select)
FRESH = 1.0


def default_home() -> Path:
    from pathlib import Path

    return Path(home_str())


def default_endpoint() -> str:
    return os.environ.get("ZMN_ENDPOINT") or default_socket_endpoint()


def parse_endpoint(endpoint: str) -> tuple[str, Any]:
    """``("unix", path)`` or ``("tcp"|"tls", (host, port))``."""
    if endpoint.startswith("unix:"):
        return "unix", endpoint[5:]
    for scheme in ("tcp", "tls"):
        prefix = f"{scheme}://"
        if endpoint.startswith(prefix):
            host, sep, port = endpoint[len(prefix) :].rpartition(":")
            if sep and port.isdigit():
                return scheme, (host.strip("[]") or "127.0.0.1", int(port))
    from zmn.api.errors import InvalidArgument

    raise InvalidArgument(
        f"bad endpoint {endpoint!r}: use unix:PATH, tcp://HOST:PORT or tls://HOST:PORT",
        field="endpoint",
    )


def _unavailable(endpoint: str, exc: Exception) -> Unavailable:
    return Unavailable(
        f"cannot reach the management node at {endpoint} ({exc.__class__.__name__}: {exc});"
        " is it running? try: zmn status",
        code="NODE.UNREACHABLE",
        endpoint=endpoint,
    )


def _tls_context() -> ssl.SSLContext:
    import ssl

    ctx = ssl.create_default_context(cafile=os.environ.get("ZMN_TLS_CA") or None)
    if os.environ.get("ZMN_TLS_INSECURE") == "1":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _closed_by_peer(sock: Any) -> bool:
    """True when the node has closed this connection and sent nothing we have not read."""
    import select

    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        if hasattr(sock, "pending") and sock.pending():  # TLS: decrypted bytes are waiting
            return False
        import _socket

        # the raw descriptor's view (for TLS too): end of stream, or bytes still to read
        peek: bytes = _socket.socket.recv(sock, 1, _socket.MSG_PEEK)
        return peek == b""
    except (OSError, ValueError):
        return True


def request_frame(
    req_id: int,
    api: str,
    args: dict[str, Any] | None,
    session: str | None,
    *,
    wait: bool,
    progress: bool,
) -> dict[str, Any]:
    """The request frame of one call (both clients)."""
    frame: dict[str, Any] = {"type": "request", "id": req_id, "api": api, "args": args or {}}
    if session:
        frame["session"] = session
    if not wait:
        frame["wait"] = False
    if progress:
        frame["progress"] = True
    return frame


class Client:
    """Blocking client: one connection, one request at a time, events to a callback."""

    def __init__(
        self,
        endpoint: str | None = None,
        session: str | None = None,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.endpoint = endpoint or default_endpoint()
        self.session = session
        self.timeout = timeout
        self.on_event = on_event
        self.hello: dict[str, Any] = {}
        self._sock: Any = None
        self._connected = 0.0  # time.monotonic() of the last connect
        self._ids = itertools.count(1)

    def connect(self) -> Client:
        kind, where = parse_endpoint(self.endpoint)
        try:
            if kind == "unix":
                # the C module: socket.py (enums, selectors) costs a cold zcli a few ms
                import _socket

                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                sock.connect(where)
            else:
                import socket

                sock = socket.create_connection(where, timeout=10)
                sock.settimeout(None)
                if kind == "tls":
                    sock = _tls_context().wrap_socket(sock, server_hostname=where[0])
        except OSError as exc:
            raise _unavailable(self.endpoint, exc) from None
        self._sock = sock
        self._connected = time.monotonic()
        hello = read_frame_sync(sock)
        if hello is None or hello.get("type") != "hello":
            raise Unavailable(
                f"{self.endpoint} did not greet as a management node", code="NODE.BAD_HELLO"
            )
        self.hello = hello
        return self

    def __enter__(self) -> Client:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def send(self, frame: dict[str, Any]) -> None:
        if (
            self._sock is not None
            and time.monotonic() - self._connected > FRESH
            and _closed_by_peer(self._sock)
        ):
            self.close()  # the node closed an idle connection (api.timeout.idle): reconnect
        if self._sock is None:
            self.connect()
        try:
            self._sock.sendall(encode_std(frame))
        except OSError as exc:
            raise _unavailable(self.endpoint, exc) from None

    def call(
        self,
        api: str,
        args: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        progress: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return its ``result``; an error reply raises its ZmnError."""
        reply = self.request(api, args, wait=wait, progress=progress, timeout=timeout)
        return reply["result"]

    def request(
        self,
        api: str,
        args: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        progress: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`call` but returns the whole reply frame (``result`` and ``job``)."""
        req_id = next(self._ids)
        self.send(request_frame(req_id, api, args, self.session, wait=wait, progress=progress))
        limit = timeout if timeout is not None else self.timeout
        self._sock.settimeout(limit)
        try:
            while True:
                try:
                    reply = read_frame_sync(self._sock)
                except TimeoutError:
                    from zmn.api.errors import Timeout

                    self.close()  # the reply may still come; this connection is now unusable
                    raise Timeout(
                        f"{api}: no reply within {limit:g}s; the operation may still finish",
                        code="CLIENT.TIMEOUT",
                    ) from None
                except OSError as exc:
                    raise _unavailable(self.endpoint, exc) from None
                if reply is None:
                    raise Unavailable(
                        f"the management node at {self.endpoint} closed the connection",
                        code="NODE.CONNECTION_CLOSED",
                    )
                if reply.get("type") == "event":
                    if self.on_event is not None:
                        self.on_event(reply)
                    continue
                if reply.get("id") not in (req_id, None):
                    continue
                if not reply.get("ok"):
                    raise ZmnError.from_wire(reply.get("error") or {})
                return reply
        finally:
            if self._sock is not None:
                self._sock.settimeout(None)

    # --- byte streams (docs/protocol.md, "Streams"): the VM serial console -------------------

    def open_stream(self, api: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call an API whose reply opens a stream; the reply carries ``stream`` (its ID)."""
        reply = self.request(api, args)
        if not reply.get("stream"):
            raise Unavailable(f"{api} opened no stream", code="NODE.NO_STREAM")
        return reply

    def send_stream(self, stream: str, data: bytes) -> None:
        import base64

        self.send({"type": "stream", "stream": stream, "data": base64.b64encode(data).decode()})

    def end_stream(self, stream: str) -> None:
        self.send({"type": "stream", "stream": stream, "end": True})

    def read_frame(self) -> dict[str, Any] | None:
        """The next frame of any type (None: the node closed the connection)."""
        try:
            return read_frame_sync(self._sock)
        except OSError as exc:
            raise _unavailable(self.endpoint, exc) from None

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def buffered(self) -> bool:
        """Bytes already read from the socket (TLS) that ``select`` cannot see."""
        pending = getattr(self._sock, "pending", None)
        return bool(pending and pending())

    def events(self, paths: list[str]) -> Iterator[dict[str, Any]]:
        """Subscribe and yield events until the connection closes."""
        self.call("Subscribe", {"paths": paths})
        while True:
            frame = read_frame_sync(self._sock)
            if frame is None:
                return
            if frame.get("type") == "event":
                yield frame


class AsyncClient:
    """Asyncio client: many requests in flight on one connection, events on a queue."""

    def __init__(self, endpoint: str | None = None, session: str | None = None) -> None:
        import asyncio

        self.endpoint = endpoint or default_endpoint()
        self.session = session
        self.hello: dict[str, Any] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed_error: ZmnError | None = None

    async def connect(self) -> AsyncClient:
        import asyncio

        kind, where = parse_endpoint(self.endpoint)
        try:
            if kind == "unix":
                self._reader, self._writer = await asyncio.open_unix_connection(where, limit=2**24)
            else:
                tls = _tls_context() if kind == "tls" else None
                self._reader, self._writer = await asyncio.open_connection(
                    *where, ssl=tls, limit=2**24
                )
        except OSError as exc:
            raise _unavailable(self.endpoint, exc) from None
        hello = await read_frame(self._reader)
        if hello is None or hello.get("type") != "hello":
            raise Unavailable(
                f"{self.endpoint} did not greet as a management node", code="NODE.BAD_HELLO"
            )
        self.hello = hello
        self.closed_error = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        return self

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        import asyncio

        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: S110
                pass
            self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def connected(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _read_loop(self) -> None:
        assert self._reader is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        err: ZmnError = Unavailable(
            "connection closed by the management node", code="NODE.CONNECTION_CLOSED"
        )
        try:
            while True:
                frame = await read_frame(self._reader)
                if frame is None:
                    break
                if frame.get("type") == "event":
                    self.events.put_nowait(frame)
                    continue
                fut = self._pending.pop(frame.get("id"), None)  # type: ignore[arg-type]
                if fut is not None and not fut.done():
                    fut.set_result(frame)
        except (OSError, ZmnError) as exc:
            err = _unavailable(self.endpoint, exc) if isinstance(exc, OSError) else exc
        finally:
            self.closed_error = err
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self._pending.clear()

    async def request(
        self,
        api: str,
        args: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        progress: bool = False,
    ) -> dict[str, Any]:
        import asyncio

        if self._writer is None or self.closed_error is not None:
            raise self.closed_error or Unavailable("not connected", code="NODE.NOT_CONNECTED")
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        frame = request_frame(req_id, api, args, self.session, wait=wait, progress=progress)
        try:
            self._writer.write(encode(frame))
            await self._writer.drain()
        except OSError as exc:
            self._pending.pop(req_id, None)
            fut.cancel()
            raise _unavailable(self.endpoint, exc) from None
        reply = await fut
        if not reply.get("ok"):
            raise ZmnError.from_wire(reply.get("error") or {})
        return reply

    async def call(self, api: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        return (await self.request(api, args, **kw))["result"]
