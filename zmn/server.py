"""API listeners: the unix socket (mode 0660) and, when configured, TCP (optionally TLS).

Each connection gets a ``hello`` frame, then sends ``request`` frames; requests on one
connection run concurrently and replies carry the request ``id``. ``Subscribe`` and
``Unsubscribe`` act on the connection itself. A malformed frame gets an error reply and the
connection is closed; the node keeps serving everyone else.

Every connection is held to the limits of :mod:`zmn.limits` (``api.limit.*``,
``api.timeout.*``): the gate refuses connections over the per-endpoint limit (the unix
socket's admin has a reserve), a request slot is taken before each frame is read (so a
connection at its in-flight limit is not read at all), frames are checked on their header,
and everything sent goes through the connection's :class:`~zmn.outbox.Outbox`, so an event
publisher never waits on a client's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zmn.api.errors import InternalError, InvalidArgument, PermissionDenied, ZmnError
from zmn.api.wire import PROTOCOL_VERSION, FrameError, read_frame
from zmn.core.bus import Event, Subscription
from zmn.core.catalogue import build_catalogue, catalogue_hash
from zmn.core.consoles import Pipe, StreamOpener
from zmn.core.fastsql import committed
from zmn.core.jobs import FINAL_JOB_STATES
from zmn.core.node import Node
from zmn.limits import ApiLimits, ConnectionGate, FrameBudget, fit_descriptors, refusals
from zmn.outbox import Outbox
from zmn.streams import Streams

log = logging.getLogger("zmn.server")

CONNECTION_APIS = ("Subscribe", "Unsubscribe")


class Connection:
    """One client connection: its limits' state, subscriptions and the outbox it writes."""

    def __init__(
        self,
        server: ApiServer,
        writer: asyncio.StreamWriter,
        kind: str,
        peer_admin: bool,
        peer: str = "",
    ) -> None:
        limits = server.limits
        self.server = server
        self.writer = writer
        self.kind = kind
        self.peer_admin = peer_admin
        self.peer = peer  # who is at the other end, for the audit trail
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.authenticated = peer_admin
        self.opened = self.last_frame = time.monotonic()
        self.slots = asyncio.Semaphore(limits.inflight)
        self.wake = asyncio.Event()  # a request ended: the deadline may apply again
        self.outbox = Outbox(
            writer,
            max_events=limits.events,
            max_bytes=limits.buffer if peer_admin else limits.anonymous_buffer,
            max_frame=limits.frame,
        )
        self.streams: Streams | None = None  # byte streams (consoles), made at the first one

    @property
    def frame_limit(self) -> int:
        limits = self.server.limits
        return limits.frame if self.authenticated else limits.anonymous_frame

    def deadline(self) -> tuple[float, str] | None:
        """When this connection is to be closed if nothing happens, and why."""
        limits = self.server.limits
        if not self.authenticated and self.kind == "tcp" and limits.auth_timeout:
            if self.tasks:  # the node's own work (a login waiting for argon2), not the client's
                return None
            return self.opened + limits.auth_timeout, "not authenticated in time"
        streaming = self.streams is not None and self.streams.active
        if limits.idle_timeout and not self.tasks and not self.subscriptions and not streaming:
            return max(self.last_frame, self.outbox.sent_at) + limits.idle_timeout, "idle"
        return None

    async def send(self, frame: dict[str, Any]) -> None:
        """Queue a reply (waits while this connection's own queue is full)."""
        await self.outbox.reply(frame)

    def event(self, frame: dict[str, Any]) -> None:
        """Queue an event; never waits (a subscriber that is behind loses events)."""
        self.outbox.event(frame)

    def authenticate(self) -> None:
        """The client proved who it is: the full frame and buffer limits apply from now."""
        self.authenticated = True
        self.outbox.resize(self.server.limits.buffer)

    def finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.slots.release()
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        for sub in self.subscriptions.values():
            sub.cancel()
        self.subscriptions.clear()
        if self.streams is not None:
            self.streams.close()


class ApiServer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.servers: list[asyncio.Server] = []
        self.connections: set[Connection] = set()
        self._catalogue: dict[str, Any] | None = None
        self._catalogue_hash = ""
        self.limits = ApiLimits.from_config(node.config)
        self.gate = ConnectionGate(self.limits)
        self._stream_openers: dict[str, StreamOpener] | None = None
        self.anonymous_frames = FrameBudget(self.limits.anonymous_total)

    @property
    def catalogue(self) -> dict[str, Any]:
        if self._catalogue is None:
            self._catalogue = build_catalogue(self.node)
            self._catalogue_hash = catalogue_hash(self._catalogue)
        return self._catalogue

    @property
    def catalogue_hash(self) -> str:
        _ = self.catalogue
        return self._catalogue_hash

    async def start(self) -> None:
        path = self.node.config.unix_path
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(path)
        tcp = self.node.config.tcp_listen
        self.limits = fit_descriptors(self.limits, 2 if tcp else 1)
        self.gate = ConnectionGate(self.limits)
        # the reader stops reading the socket at twice this much unread input (a frame
        # larger than that is still read whole once its header passed the frame limit)
        read_limit = 64 * 1024
        server = await asyncio.start_unix_server(
            lambda r, w: self._serve(r, w, "unix"), path=str(path), limit=read_limit
        )
        os.chmod(path, 0o660)
        self.servers.append(server)
        self.node.endpoints.append(f"unix:{path}")
        if tcp is not None:
            host, port = tcp
            tls = self._tls_context()
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, "tcp"),
                host=host,
                port=port,
                ssl=tls,
                limit=read_limit,
                ssl_handshake_timeout=(self.limits.auth_timeout or 60) if tls else None,
            )
            self.servers.append(server)
            bound = server.sockets[0].getsockname()
            scheme = "tls" if tls else "tcp"
            self.node.endpoints.append(f"{scheme}://{bound[0]}:{bound[1]}")

    def _tls_context(self) -> ssl.SSLContext | None:
        cert = self.node.config.get("api.tls.cert")
        key = self.node.config.get("api.tls.key")
        if not cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key or None)
        return ctx

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
            conn.outbox.abort()
            conn.writer.close()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except TimeoutError:
                pass
        path = self.node.config.unix_path
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str
    ) -> None:
        peer_admin = kind == "unix" and _peer_is_owner(writer)
        if not self.gate.admit(kind, peer_admin):
            refusals.note("connections over api.limit.connections", _peer_label(writer, kind))
            writer.transport.abort()  # nothing buffered, nothing logged per connection
            return
        try:
            conn = Connection(self, writer, kind, peer_admin, _peer_label(writer, kind))
        except BaseException:
            self.gate.release(kind)
            raise
        self.connections.add(conn)
        conn.outbox.send_now(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "version": self.node.version,
                "node": self.node.uuid,
                "catalogueHash": self.catalogue_hash,
                "auth": "peer" if peer_admin else "session",
            }
        )
        try:
            await self._read_requests(conn, reader)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.close()
            self.connections.discard(conn)
            self.gate.release(kind)
            await conn.outbox.close()
            try:
                writer.close()
            except Exception:  # noqa: S110 - the peer is gone either way
                pass
            _drop_unread(reader)

    async def _read_requests(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        """Read frames while the connection keeps within its limits; start a task per request.

        A request slot is taken before the next frame is read, so a client with
        ``api.limit.inflight`` requests running is not read from at all (backpressure).
        """
        loop = asyncio.get_running_loop()
        writing = conn.outbox.task  # ends when the peer is gone: stop reading what it left
        while not conn.closed and not writing.done():
            await conn.slots.acquire()
            if writing.done():
                return
            held: list[Callable[[], None]] = []  # budget a large anonymous frame holds
            admit = None if conn.authenticated else functools.partial(self._hold, held)
            read = loop.create_task(read_frame(reader, conn.frame_limit, admit))
            try:
                # one turn first: a frame that is already buffered (pipelined requests) is read
                # in the task's first step, and needs none of the waiting below
                await asyncio.sleep(0)
                if writing.done():
                    return
                while not read.done():
                    conn.wake.clear()
                    due = conn.deadline()
                    # no deadline while a call runs or a subscription is open: look again
                    # now and then, since neither ends by itself waking this loop (but the
                    # end of a request of a connection not logged in does: its auth deadline)
                    recheck = min(5.0, self.limits.idle_timeout or 5.0)
                    timeout = recheck if due is None else max(0.0, due[0] - time.monotonic())
                    waits: set[asyncio.Future[Any]] = {read, writing}
                    waker = None
                    if due is None and not conn.authenticated and conn.tasks:
                        waker = loop.create_task(conn.wake.wait())
                        waits.add(waker)
                    await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
                    if waker is not None:
                        waker.cancel()
                    if writing.done():
                        return
                    due = conn.deadline()
                    if not read.done() and due is not None and time.monotonic() >= due[0]:
                        if not conn.authenticated:
                            refusals.note(f"connections closed: {due[1]}", conn.peer)
                        read.cancel()
                        return
            finally:
                if not read.done():
                    read.cancel()
                elif not read.cancelled():
                    read.exception()  # seen, even when returning without it (peer gone)
            try:
                frame = read.result()
            except FrameError as exc:
                _release(held)
                if not conn.authenticated:
                    refusals.note("bad frames before authentication", conn.peer)
                conn.outbox.send_now(
                    {"type": "reply", "id": None, "ok": False, "error": exc.to_wire()}
                )
                return
            except BaseException:
                _release(held)
                raise
            if frame is None:
                return
            conn.last_frame = time.monotonic()
            if frame.get("type") == "stream":  # console bytes: no request slot, no task
                conn.slots.release()
                await self._stream_frame(conn, frame)
                continue
            task = loop.create_task(self._request(conn, frame))
            conn.tasks.add(task)
            task.add_done_callback(conn.finished)
            if held:  # the request keeps the frame (and its decoded args) until it ends
                task.add_done_callback(functools.partial(_release_after, held))

    async def _request(self, conn: Connection, frame: dict[str, Any]) -> None:
        req_id = frame.get("id")
        try:
            if frame.get("type", "request") != "request":
                raise FrameError(f"expected a request frame, got type {frame.get('type')!r}")
            api = frame.get("api")
            if not isinstance(api, str) or not api:
                raise InvalidArgument("request has no api name", field="api")
            args = frame.get("args") or {}
            session = frame.get("session")
            if session is not None and not isinstance(session, str):
                raise InvalidArgument("session must be a string", field="session")
            if not conn.authenticated and session is not None:
                self._try_session(conn, session)
            pipes: list[Pipe] = []  # the byte stream a stream API's success opened
            if api in CONNECTION_APIS:
                result: Any = self._connection_api(conn, api, args, session)
                job = None
                conn.authenticate()
            elif api == "GetApiCatalogue":
                result, job = {"catalogue": self.catalogue, "hash": self.catalogue_hash}, None
            else:
                opener = self.stream_openers.get(api)
                finish = None
                if opener is not None:  # opened before the call counts as done (audited)

                    async def finish(result: Any, opener: StreamOpener = opener) -> None:
                        pipes.append(await opener.open_stream(self.node, result))

                on_job = None
                if frame.get("progress"):

                    def on_job(job_uuid: str) -> None:
                        self._follow(conn, req_id, job_uuid)

                result, job = await self.node.execute(
                    api,
                    args,
                    session=session,
                    peer_admin=conn.peer_admin,
                    wait=bool(frame.get("wait", True)),
                    request_id=str(req_id),
                    on_job=on_job,
                    peer=conn.peer,
                    finish=finish,
                )
            await committed()  # what the call wrote is committed before anyone hears of it
            if not conn.authenticated and _proves_identity(self.node, api, result):
                conn.authenticate()
            reply: dict[str, Any] = {"type": "reply", "id": req_id, "ok": True, "result": result}
            if job:
                reply["job"] = job
            if pipes:
                if conn.streams is None:
                    conn.streams = Streams(conn)
                await conn.streams.start(reply, pipes[0])
                return
            await conn.send(reply)
        except ZmnError as exc:
            await conn.send({"type": "reply", "id": req_id, "ok": False, "error": exc.to_wire()})
        except Exception as exc:  # never let a bug take the connection or node down
            log.exception("request %r failed", req_id)
            err = InternalError(f"{type(exc).__name__}: {exc}")
            await conn.send({"type": "reply", "id": req_id, "ok": False, "error": err.to_wire()})

    # ----------------------------------------------------------------- streams (zmn/streams.py)

    @property
    def stream_openers(self) -> dict[str, StreamOpener]:
        if self._stream_openers is None:
            impls = self.node.extensions.all(StreamOpener)  # type: ignore[type-abstract]
            self._stream_openers = {o.api: o for o in impls}
        return self._stream_openers

    async def _stream_frame(self, conn: Connection, frame: dict[str, Any]) -> None:
        if conn.streams is not None:
            await conn.streams.client_frame(frame)

    @contextlib.contextmanager
    def _hold(self, held: list[Callable[[], None]], length: int) -> Iterator[None]:
        """Reserve a large anonymous frame's bytes while it is read, and keep them (in
        ``held``) for its request if the read succeeds."""
        release = self.anonymous_frames.reserve(length)
        try:
            yield
        except BaseException:
            release()
            raise
        held.append(release)

    def _try_session(self, conn: Connection, session: str) -> None:
        """A valid session authenticates the connection before its call runs (a long first
        call must not outlast ``api.timeout.auth``); a bad one is the call's to refuse."""
        try:
            self.node.authenticate(session, False)
        except ZmnError:
            return
        conn.authenticate()

    def _follow(self, conn: Connection, req_id: Any, job_uuid: str) -> None:
        key = f"job:{job_uuid}"

        def forward(event: Event) -> None:
            conn.event({**event.to_wire(), "requestId": req_id})
            if event.data.get("state") in FINAL_JOB_STATES:
                sub = conn.subscriptions.pop(key, None)
                if sub:
                    sub.cancel()

        conn.subscriptions[key] = self.node.bus.subscribe(f"/job/{job_uuid}", forward)

    def _connection_api(
        self, conn: Connection, api: str, args: Any, session: str | None
    ) -> dict[str, Any]:
        principal = self.node.authenticate(session, conn.peer_admin)
        if not principal.is_admin:
            raise PermissionDenied(
                "event subscriptions need an admin account", code="IDENTITY.ADMIN_ONLY"
            )
        if not isinstance(args, dict):
            raise InvalidArgument("args must be a JSON object", field="args")
        unknown = set(args) - {"paths"}
        if unknown:
            raise InvalidArgument(
                f"{api} has no parameter {sorted(unknown)[0]!r} (parameters: paths)",
                field=sorted(unknown)[0],
            )
        paths = args.get("paths", ["/**"] if api == "Subscribe" else list(conn.subscriptions))
        if isinstance(paths, str):
            paths = [p for p in paths.split(",") if p]
        if not isinstance(paths, list) or not all(
            isinstance(p, str) and p.startswith("/") for p in paths
        ):
            raise InvalidArgument("paths must be a list of patterns starting with /", field="paths")
        if api == "Subscribe":
            for pattern in paths:
                if pattern not in conn.subscriptions:

                    def forward(event: Event, _p: str = pattern) -> None:
                        conn.event({**event.to_wire(), "pattern": _p})

                    conn.subscriptions[pattern] = self.node.bus.subscribe(pattern, forward)
        else:
            for pattern in paths:
                sub = conn.subscriptions.pop(pattern, None)
                if sub:
                    sub.cancel()
        return {"subscriptions": sorted(k for k in conn.subscriptions if not k.startswith("job:"))}


def _release(held: list[Callable[[], None]]) -> None:
    for release in held:
        release()


def _release_after(held: list[Callable[[], None]], _task: asyncio.Task[Any]) -> None:
    _release(held)


def _drop_unread(reader: asyncio.StreamReader) -> None:
    """Free what a closed connection left unread now.

    A stream reader sits in reference cycles (its protocol, the cancelled read's traceback)
    that only the cyclic collector frees, and that runs by object counts, not by bytes: a
    flood of connections that close with their pipelined requests unread held hundreds of
    kilobytes each until then (RSS grew 150 MiB in 12 s under 50 flooding clients).
    """
    buffer = getattr(reader, "_buffer", None)
    if isinstance(buffer, bytearray):
        buffer.clear()


def _proves_identity(node: Node, api: str, result: Any) -> bool:
    """A successful call of an API that needs a session, or a successful login."""
    if api.startswith("LogIn"):
        return isinstance(result, dict) and bool(result.get("inventory") or result.get("uuid"))
    try:
        spec = node.apis.get(api).__api__
    except ZmnError:
        return False
    return not spec.public


def _peer_is_owner(writer: asyncio.StreamWriter) -> bool:
    """The unix-socket peer runs as root or as the node's own user (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


def _peer_label(writer: asyncio.StreamWriter, kind: str) -> str:
    """``unix:uid=U,pid=P`` (SO_PEERCRED) or ``tcp:HOST:PORT`` / ``tls:HOST:PORT``."""
    if kind == "unix":
        sock = writer.get_extra_info("socket")
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except (OSError, AttributeError):
            return "unix"
        pid, uid, _gid = struct.unpack("3i", creds)
        return f"unix:uid={uid},pid={pid}"
    scheme = "tls" if writer.get_extra_info("sslcontext") is not None else "tcp"
    addr = writer.get_extra_info("peername")
    if not isinstance(addr, tuple) or len(addr) < 2:
        return scheme
    host = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
    return f"{scheme}:{host}:{addr[1]}"


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file no process listens on (left by a node that was killed)."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise RuntimeError(f"another management node is serving {path}")
