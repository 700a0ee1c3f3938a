"""zagent's HTTP(S) command API.

:class:`AgentApp` is the transport-free core: it authenticates (before anything else, so a
refused request reads no JSON and reaches no command), routes, runs the command or hands it
to the task runner, and maps errors to HTTP statuses with the API's error body::

    200 {...result}                 202 {"taskId": ...}        (long command with "callback")
    4xx/5xx {"error": {"kind", "code", "message", "details", "retryable"}}

``POST /v1/batch {"steps": [{"path", "body"}, ...]}`` runs several POST commands of one
signed request in order, as if each had come alone (a long one with ``"callback": true``
is handed to the task runner): ``200 {"results": [...]}``. The first step that fails stops
the rest; the answer is that step's error (its details name ``batchStep`` and ``path``) with
the ``results`` of the steps before it. A VM start sends its bridges, volume files, network
and the start task this way: one round trip instead of four.

:class:`AgentServer` puts it behind a ``ThreadingHTTPServer`` (HTTPS when a certificate is
configured, mutual TLS with a client CA), wires driver events to the reporter and owns the
lifecycle of all parts.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agent.commands import Commands, Route
from agent.config import AgentConfig
from agent.console import CHANNEL, UPGRADE, ConsoleChannel, ConsoleCommands, pump
from agent.drivers.base import Driver, LifecycleEvent
from agent.ha import HaKeeper
from agent.leases import watcher_for
from agent.metrics import MetricsSampler
from agent.network.executor import Executor
from agent.reporter import Reporter
from agent.storage.commands import StorageCommands
from agent.storage.shared import SharedStorageCommands
from agent.tasks import TaskRunner
from agent.validate import token
from zmn.api import agentauth
from zmn.api.errors import InternalError, InvalidArgument, NotFound, ZmnError

log = logging.getLogger("zagent.server")

STATUS = {
    "InvalidArgument": 400,
    "PermissionDenied": 403,
    "NotFound": 404,
    "Conflict": 409,
    "InvalidState": 409,
    "Unavailable": 503,
    "Timeout": 504,
}
TASK_PREFIX = "/v1/task/"
BATCH_PATH = "/v1/batch"
MAX_BATCH = 64  # steps in one batch


def status_for(err: ZmnError) -> int:
    if isinstance(err, agentauth.AuthError):
        return 401
    if err.code == "AGENT.NO_SUCH_METHOD":
        return 405
    return STATUS.get(err.kind, 500)


class AgentApp:
    """Authentication, routing and error mapping for one request at a time (thread-safe)."""

    def __init__(
        self,
        secret: bytes,
        commands: Commands,
        tasks: TaskRunner,
        *,
        skew: int = agentauth.DEFAULT_SKEW,
        clock: Callable[[], float] = time.time,
        extra_routes: dict[tuple[str, str], Route] | None = None,
        nonces: agentauth.NonceCache | None = None,
        on_contact: Callable[[], None] | None = None,
    ) -> None:
        self._secret = secret
        self._on_contact = on_contact
        self._routes = {**commands.routes(), **(extra_routes or {})}
        self._tasks = tasks
        self._skew = skew
        self._clock = clock
        self.nonces = nonces if nonces is not None else agentauth.NonceCache()

    def precheck(self, method: str, target: str, headers: Any) -> tuple[int, dict[str, Any]] | None:
        """Before a large body is read: refuse unless its declared hash is signed."""
        try:
            agentauth.verify_head(
                self._secret, method, target, headers, now=self._clock(), skew=self._skew
            )
        except agentauth.AuthError as err:
            return 401, {"error": err.to_wire()}
        return None

    def handle(
        self, method: str, target: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        try:
            agentauth.verify(
                self._secret,
                method,
                target,
                headers,
                body,
                nonces=self.nonces,
                now=self._clock(),
                skew=self._skew,
            )
        except agentauth.AuthError as err:
            log.warning("refused %s %s: %s", method, target, err.code)
            return 401, {"error": err.to_wire()}
        if self._on_contact is not None:  # a signed request: the node is there (HA fencing)
            self._on_contact()
        try:
            return self._dispatch(method, target, body)
        except ZmnError as err:
            return status_for(err), {"error": err.to_wire()}
        except Exception as exc:
            log.exception("%s %s failed", method, target)
            bug = InternalError(f"{exc.__class__.__name__}: {exc}", code="AGENT.INTERNAL")
            return 500, {"error": bug.to_wire()}

    def _route(self, method: str, path: str) -> Route:
        route = self._routes.get((method, path))
        if route is not None:
            return route
        if any(p == path for _m, p in self._routes):
            raise InvalidArgument(f"{method} not allowed on {path}", code="AGENT.NO_SUCH_METHOD")
        raise NotFound(f"no command {method} {path}", code="AGENT.NO_SUCH_COMMAND")

    def _dispatch(self, method: str, target: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        if method == "GET" and parts.path.startswith(TASK_PREFIX):
            return 200, self._tasks.get(token(parts.path[len(TASK_PREFIX) :], "taskId"))
        if method == "POST" and parts.path == BATCH_PATH:
            return self._batch(_json_object(raw))
        return self._run(self._route(method, parts.path), parts.path, _json_object(raw), query)

    def _run(
        self, route: Route, path: str, body: dict[str, Any], query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        callback = body.get("callback", False)
        if route.long and callback is True:
            if route.check is not None:
                route.check(body)
            tid = body.get("taskId")
            task_id = None if tid is None else token(tid, "taskId")
            handler = route.handler
            tid = self._tasks.submit(path, lambda: handler(body, query), task_id)
            return 202, {"taskId": tid}
        return 200, route.handler(body, query)

    def _batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        steps = body.get("steps")
        if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_BATCH:
            raise InvalidArgument(
                f"steps: a list of 1 to {MAX_BATCH} {{path, body}} objects", field="steps"
            )
        for i, step in enumerate(steps):  # all checked before the first one runs
            path = step.get("path") if isinstance(step, dict) else None
            if (
                not isinstance(path, str)
                or path == BATCH_PATH
                or not isinstance(step.get("body", {}), dict)
            ):
                raise InvalidArgument(
                    f"steps[{i}]: an object with a command's path (not {BATCH_PATH}) and an"
                    " object body",
                    field="steps",
                )
            # _route raises for a path that names no POST command: the batch fails before any runs
            if self._route("POST", path).upgrade:
                raise InvalidArgument(
                    f"steps[{i}]: {path} switches protocols; it cannot be in a batch",
                    field="steps",
                )
        results: list[dict[str, Any]] = []
        for i, step in enumerate(steps):
            path = step["path"]
            try:
                results.append(
                    self._run(self._route("POST", path), path, step.get("body", {}), {})[1]
                )
            except ZmnError as err:
                wire = err.to_wire()
                wire["details"] = {**wire.get("details", {}), "batchStep": i, "path": path}
                return status_for(err), {"error": wire, "results": results}
        return 200, {"results": results}


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("body is not valid JSON", code="AGENT.BAD_BODY") from None
    if not isinstance(obj, dict):
        raise InvalidArgument("body must be a JSON object", code="AGENT.BAD_BODY")
    return obj


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "zagent"
    sys_version = ""

    def setup(self) -> None:
        self.request.settimeout(self.server.request_timeout)  # no idle client holds a thread
        super().setup()

    def handle_one_request(self) -> None:
        # the request line and headers must all arrive within header_timeout: a client
        # dripping a byte at a time cannot keep one of the few threads
        self.server.deadlines.set(self.request, self.server.header_timeout)
        try:
            super().handle_one_request()
        finally:
            self.server.deadlines.clear(self.request)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _reply(self, status: int, payload: dict[str, Any], *, close: bool = False) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        raw_len = self.headers.get("Content-Length", "0")
        if not raw_len.isdigit():
            err = InvalidArgument("bad Content-Length", code="AGENT.BAD_BODY")
            self._reply(400, {"error": err.to_wire()}, close=True)
            return
        length = int(raw_len)
        if length > self.server.max_body:
            err = InvalidArgument(
                f"body larger than {self.server.max_body} bytes", code="AGENT.BODY_TOO_LARGE"
            )
            self._reply(413, {"error": err.to_wire()}, close=True)
            return
        if length > agentauth.PREAUTH_BODY:
            refused = self.server.app.precheck(self.command, self.path, self.headers)
            if refused is not None:
                self._reply(*refused, close=True)  # the body is never read
                return
        self.server.deadlines.set(self.request, self.server.request_timeout)
        body = self.rfile.read(length) if length else b""
        self.server.deadlines.clear(self.request)
        started = time.monotonic()
        status, payload = self.server.app.handle(self.command, self.path, self.headers, body)
        channel = payload.pop(CHANNEL, None)
        if channel is not None:
            self._upgrade(channel)
            return
        self._reply(status, payload)
        log.info(
            "%s %s -> %d (%.1f ms)",
            self.command,
            self.path,
            status,
            (time.monotonic() - started) * 1000,
        )

    def _upgrade(self, channel: ConsoleChannel) -> None:
        """Answer 101 and carry the console's bytes on this connection until it ends."""
        try:
            self.send_response(101)
            self.send_header("Upgrade", UPGRADE)
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
        except OSError:
            channel.close()
            raise
        self.close_connection = True
        log.info("console attached for %s", self.path)
        ended = pump(self.request, channel)
        log.info("console detached (%s ended it)", ended)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Deadlines:
    """Sockets that must finish reading by a time; one thread shuts down the late ones."""

    def __init__(self) -> None:
        self._due: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zagent-deadlines", daemon=True)
        self._thread.start()

    def set(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[sock] = time.monotonic() + seconds

    def clear(self, sock: socket.socket) -> None:
        with self._lock:
            self._due.pop(sock, None)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [s for s, due in self._due.items() if due <= now]
                for s in late:
                    del self._due[s]
            for s in late:
                try:
                    s.shutdown(socket.SHUT_RDWR)  # the blocked read returns; the thread ends
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()


class _HttpServer(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` of them: a connection over
    the cap is closed at once, before any of it is read, and costs no thread. Connections
    stay open between requests (HTTP/1.1 keep-alive; the node keeps a few per agent), so
    closing the server also shuts the open ones: a stopped agent answers nothing more."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: AgentApp,
        *,
        max_body: int,
        request_timeout: float,
        tls: ssl.SSLContext | None,
        max_connections: int = 64,
        header_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.request_timeout = request_timeout
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.active = 0
        self.refused = 0
        self._count = threading.Lock()
        self._open: set[Any] = set()  # sockets being served (guarded by _count)
        self.deadlines = _Deadlines()
        self._tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count:
            full = self.active >= self.max_connections
            if not full:
                self.active += 1
                self._open.add(request)
        if full:
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self._count:
            self.active -= 1
            self._open.discard(request)

    def server_close(self) -> None:
        super().server_close()
        self.deadlines.stop()
        with self._count:
            still = list(self._open)
        for sock in still:  # the blocked reads return; their threads end
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self._tls is not None:
            # the handshake happens on first read, in the handler's thread, so a slow client
            # cannot stall the accept loop
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def tls_context(cfg: AgentConfig) -> ssl.SSLContext | None:
    if not cfg.tls_cert or not cfg.tls_key:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    if cfg.tls_client_ca:
        ctx.load_verify_locations(cfg.tls_client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class AgentServer:
    """All of one agent: HTTP server, commands, task runner, reporter, driver events."""

    def __init__(
        self,
        cfg: AgentConfig,
        secret: bytes,
        driver: Driver,
        executor: Executor,
        host_uuid: str,
        *,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.driver = driver
        self.host_uuid = host_uuid
        self.reporter = reporter or Reporter(
            cfg.callback_url, secret, host_uuid, ca_file=cfg.callback_ca
        )
        self.commands = Commands(cfg, driver, executor, host_uuid)
        self.storage = StorageCommands(driver, getattr(driver, "uri", None))
        self.tasks = TaskRunner(self.reporter, cfg.task_workers)
        os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
        self.nonces = agentauth.PersistentNonceCache(os.path.join(cfg.state_dir, "nonces"))
        self.ha = HaKeeper(driver, host_uuid)
        self.app = AgentApp(
            secret,
            self.commands,
            self.tasks,
            skew=cfg.clock_skew,
            clock=clock,
            extra_routes={
                **self.storage.routes(),
                **SharedStorageCommands(executor).routes(),
                **ConsoleCommands(driver).routes(),
                **self.ha.routes(),
            },
            nonces=self.nonces,
            on_contact=self.ha.contact,
        )
        self.httpd = _HttpServer(
            (cfg.listen, cfg.port),
            self.app,
            max_body=cfg.max_body,
            request_timeout=cfg.request_timeout,
            tls=tls_context(cfg),
            max_connections=cfg.max_connections,
            header_timeout=cfg.header_timeout,
        )
        self.metrics = MetricsSampler(driver, self.reporter, cfg.metrics_interval)
        self._thread: threading.Thread | None = None
        self.leases = watcher_for(cfg.state_dir, self.reporter.submit)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def _on_event(self, event: LifecycleEvent) -> None:
        self.reporter.submit("vm.lifecycle", event.to_wire())

    def start(self) -> None:
        """Start reporting and serving in a background thread (tests, embedding)."""
        self._start_parts()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="zagent-http", daemon=True
        )
        self._thread.start()

    def _start_parts(self) -> None:
        self.reporter.start()
        self.driver.set_event_listener(self._on_event)
        self.leases.start()
        self.metrics.start()
        self.ha.start()
        host, port = self.address
        log.info("zagent serving on %s:%d (host %s)", host, port, self.host_uuid)

    def stop(self) -> None:
        """Stop serving, finish running tasks, flush reports, close the driver."""
        self.driver.set_event_listener(None)
        self.leases.stop()
        self.metrics.stop()
        self.ha.stop()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()
        self.tasks.shutdown(wait=True)
        self.reporter.stop()
        self.driver.close()
        self.nonces.close()
