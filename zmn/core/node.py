"""The management node: every service in one process, and the path of an API call.

An API call goes: decode (unknown parameters refused by name) -> authenticate (session, or
the unix-socket owner as admin) -> authorize (admin-only APIs) -> resolve names to UUIDs ->
route to the owning service over the bus -> run (directly, or as a job for long APIs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import text

from zmn import __version__
from zmn.api.errors import (
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    ZmnError,
)
from zmn.api.message import ApiMessage, ApiTable, CreateMessage, decode_args, redacted_args
from zmn.core import plugins
from zmn.core.audit import ApiCallRecord, notify, settle
from zmn.core.bus import Bus, Envelope, LocalBus, Principal
from zmn.core.config import BootConfig
from zmn.core.crud import resolve_message_refs
from zmn.core.db import Database, new_uuid
from zmn.core.extension import ExtensionRegistry
from zmn.core.fastsql import settle_before_threads
from zmn.core.flow import FlowRegistry
from zmn.core.globalconfig import GlobalConfigStore
from zmn.core.jobs import JobManager
from zmn.core.query import QueryCompiler
from zmn.core.resource import ResourceRegistry
from zmn.core.service import Call, Service
from zmn.core.tags import TagPatterns
from zmn.core.taskqueue import TaskQueues

log = logging.getLogger("zmn.node")


class Authenticator(Protocol):
    """Extension point the identity service implements."""

    def principal_for_session(self, session_uuid: str) -> Principal: ...

    def admin_principal(self) -> Principal: ...


class ApiStats:
    """Per-API counts and recent latencies for ``GetManagementNodeStats`` and the dashboard."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.latency: dict[str, deque[float]] = {}
        self.recent: deque[float] = deque(maxlen=10_000)  # completion times for the rate
        self.in_flight = 0

    def record(self, api: str, seconds: float, ok: bool) -> None:
        self.calls[api] = self.calls.get(api, 0) + 1
        if not ok:
            self.errors[api] = self.errors.get(api, 0) + 1
        self.latency.setdefault(api, deque(maxlen=1000)).append(seconds)
        self.recent.append(time.monotonic())

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        rate = sum(1 for t in self.recent if now - t <= 10) / 10
        per_api = {}
        for api, samples in self.latency.items():
            ordered = sorted(samples)
            per_api[api] = {
                "calls": self.calls.get(api, 0),
                "errors": self.errors.get(api, 0),
                "p50ms": round(_pct(ordered, 50) * 1000, 3),
                "p95ms": round(_pct(ordered, 95) * 1000, 3),
                "p99ms": round(_pct(ordered, 99) * 1000, 3),
            }
        everything = sorted(s for d in self.latency.values() for s in d)
        return {
            "apiRatePerSecond": rate,
            "apiInFlight": self.in_flight,
            "totalCalls": sum(self.calls.values()),
            "totalErrors": sum(self.errors.values()),
            "p50ms": round(_pct(everything, 50) * 1000, 3),
            "p95ms": round(_pct(everything, 95) * 1000, 3),
            "p99ms": round(_pct(everything, 99) * 1000, 3),
            "apis": per_api,
        }


def _pct(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return ordered[index]


def make_bus(url: str, node: Node | None = None) -> Bus:
    if url.startswith("local"):
        return LocalBus()
    if url.startswith(("amqp://", "amqps://")) and node is not None:
        from zmn.core.cluster import ClusterBus  # pika only when RabbitMQ is configured

        return ClusterBus(
            url,
            node.uuid,
            lambda name, args: decode_args(node.apis.get(name), args),
            namespace=node.config.get("bus.namespace"),
        )
    raise InvalidArgument(
        f"bus.url {url!r}: use local:// or amqp://user:pass@host:port/vhost", field="bus.url"
    )


class Node:
    """One management node."""

    def __init__(self, config: BootConfig, *, node_uuid: str | None = None) -> None:
        self.config = config
        self.uuid = node_uuid or self._persistent_uuid(config.home)
        self.version = __version__
        self.db = Database(config.db_url)
        self.bus = make_bus(config.bus_url, self)
        self.resources = ResourceRegistry()
        self.compiler = QueryCompiler(self.resources)
        self.apis = ApiTable()
        self.routes: dict[str, str] = {}
        self.services: dict[str, Service] = {}
        self.plugin_errors: dict[str, str] = {}
        self.extensions = ExtensionRegistry()
        self.global_config = GlobalConfigStore()
        self.tag_patterns = TagPatterns()
        self.flows = FlowRegistry(self)
        self.queues = TaskQueues()
        self.jobs = JobManager(self)
        self.stats = ApiStats()
        self.authenticator: Authenticator | None = None
        self.started_at = time.time()
        self.endpoints: list[str] = []
        self.stopping = False
        # resourceUuids this node made for creates in flight (see execute): nothing can exist
        # under them yet, so the idempotent-create look-up skips them
        self.minted: set[str] = set()
        self.on_fenced: Callable[[], None] | None = None  # set by the daemon: end the process
        # Whether this node owns a resource on the ring (the cluster wiring replaces it; a
        # single node owns everything). Trackers use it so that each host is pinged by one node.
        self.owns_resource: Callable[[str], bool] = lambda _uuid: True
        self.connection_apis: dict[str, type[ApiMessage]] = {}
        # Pending while start() runs: the API socket is bound before the services start, and
        # a call that came in meanwhile would race start-up work (recovery of the chains a
        # previous life left open took a live run for one of those); such calls wait.
        self._starting: asyncio.Future[None] | None = None
        # API name -> a context manager factory run around its calls with the caller's peer
        # label (the identity service limits logins per address this way)
        self.gates: dict[str, Callable[[str], AbstractAsyncContextManager[None]]] = {}

    @staticmethod
    def _persistent_uuid(home: Path) -> str:
        path = home / "node.uuid"
        try:
            value = path.read_text().strip()
            if len(value) == 32:
                return value
        except OSError:
            pass
        value = new_uuid()
        try:
            home.mkdir(parents=True, exist_ok=True)
            path.write_text(value + "\n")
        except OSError:
            pass
        return value

    # ----------------------------------------------------------------- loading

    def load_services(self, classes: list[type[Service]] | None = None) -> None:
        """Load services from entry points (minus ``plugins.disabled``) or the given classes."""
        if classes is None:
            classes = []
            disabled = self.config.disabled_plugins
            for ep in plugins.all_entry_points():
                if ep.name in disabled:
                    continue
                try:
                    classes.append(ep.load())
                except Exception as exc:  # a broken plugin must not stop the others
                    self.plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                    log.error("plugin %s failed to load: %s", ep.name, exc)
        names = {c.name for c in classes}
        for cls in classes:
            missing = [r for r in cls.requires if r not in names]
            if missing:
                self.plugin_errors[cls.name] = f"needs disabled service(s): {', '.join(missing)}"
                log.error("service %s not loaded: needs %s", cls.name, ", ".join(missing))
                continue
            try:
                service = cls(self)
                service.declare(self.resources)
            except Exception as exc:
                self.plugin_errors[cls.name] = f"{type(exc).__name__}: {exc}"
                log.exception("service %s failed to initialise", cls.name)
                continue
            self.services[cls.name] = service
            for d in cls.global_configs:
                self.global_config.declare(d)
            for p in cls.tag_patterns:
                self.tag_patterns.add(p)
            for api_cls, _method in cls.handlers().values():
                api_cls.__api__.service = cls.name
                self.apis.add(api_cls)
                self.routes[api_cls.__api__.name] = cls.name
        self.resources.finalize()
        for name, service in self.services.items():
            table = {
                api: getattr(service, method) for api, (_c, method) in service.handlers().items()
            }
            for api_name, (api_cls, fn) in service.dynamic_handlers().items():
                api_cls.__api__.service = name
                self.apis.add(api_cls)
                self.routes[api_name] = name
                table[api_name] = fn
            self.bus.serve(name, self._dispatcher(service, table))

    def _dispatcher(self, service: Service, table: dict[str, Any]) -> Callable[[Envelope], Any]:

        async def dispatch(env: Envelope) -> Any:
            fn = table.get(env.api)
            if fn is None:
                raise NotFound(f"{service.name} has no handler for {env.api}", code="API.NOT_FOUND")
            job = self.jobs.handles.get(env.job_uuid) if env.job_uuid else None
            return await fn(env.message, Call(self, env.principal, env.api, job, env.id))

        return dispatch

    def route(self, api_name: str) -> str:
        service = self.routes.get(api_name)
        if service is None:
            raise NotFound(f"no loaded service handles {api_name}", code="API.NOT_FOUND")
        return service

    def db_write(self, statement: Any) -> None:
        """One write statement in its own transaction (Core: no ORM session to set up)."""
        with self.db.engine.begin() as conn:
            conn.execute(statement)

    # ----------------------------------------------------------------- life cycle

    async def start(self) -> None:
        self.started_at = time.time()
        starting = self._starting = asyncio.get_running_loop().create_future()
        try:
            await self._start_services()
        except BaseException as exc:
            starting.set_exception(
                Unavailable(
                    f"the management node failed to start: {type(exc).__name__}: {exc}",
                    code="NODE.START_FAILED",
                )
            )
            starting.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        starting.set_result(None)

    async def _start_services(self) -> None:
        settle_before_threads(asyncio.get_running_loop())
        if not self.services:
            self.load_services()
        await self.bus.start()
        self.global_config.load(self.db)
        self.jobs.mark_interrupted()
        for service in self.services.values():
            await service.start()
        log.info(
            "node %s started: %d services, db=%s, bus=%s",
            self.uuid,
            len(self.services),
            self.db.backend,
            self.bus.name,
        )

    async def stop(self, grace: float | None = None) -> None:
        self.stopping = True
        if grace is None:
            grace = float(self.config.get("shutdown.grace", "30"))
        parked = await self.jobs.drain(grace)
        if parked:
            log.warning("%d job(s) did not finish within %gs and were interrupted", parked, grace)
        for service in reversed(list(self.services.values())):
            try:
                await service.stop()
            except Exception:
                log.exception("service %s failed to stop", service.name)
        await self.bus.stop()
        self.db.dispose()

    def admin_principal(self) -> Principal:
        if self.authenticator is not None:
            return self.authenticator.admin_principal()
        return Principal("0" * 32, "admin", "SystemAdmin")

    # ----------------------------------------------------------------- API calls

    def authenticate(self, session_uuid: str | None, peer_admin: bool) -> Principal:
        if session_uuid:
            if self.authenticator is None:
                raise PermissionDenied("sessions need the identity service, which is disabled")
            return self.authenticator.principal_for_session(session_uuid)
        if peer_admin:
            return self.admin_principal()
        raise PermissionDenied(
            "this endpoint needs a session: call LogInByAccount (zcli login) first",
            code="IDENTITY.SESSION_REQUIRED",
        )

    async def execute(
        self,
        api_name: str,
        args: dict[str, Any],
        *,
        session: str | None = None,
        peer_admin: bool = False,
        principal: Principal | None = None,
        wait: bool = True,
        request_id: str = "",
        on_job: Callable[[str], None] | None = None,
        peer: str = "",
        finish: Callable[[Any], Awaitable[None]] | None = None,
    ) -> tuple[Any, str | None]:
        """Run one API call; returns (result, job UUID or None).

        ``peer`` names the connection the call came in on, for the audit trail. ``finish`` is
        awaited with the result before the call counts as done: its failure is the call's
        (the API server opens an ``OpenVmConsole``'s stream there, so the audit row says
        whether the console really opened).
        """
        if self._starting is not None and not self._starting.done():
            await asyncio.shield(self._starting)  # start-up first (see __init__)
        started = time.perf_counter()
        ok = False
        self.stats.in_flight += 1
        record = ApiCallRecord(api_name, peer, request_id, args)
        try:
            cls = self.apis.get(api_name)
            spec = record.spec = cls.__api__
            if spec.internal and principal is None:
                raise NotFound(f"no API named {api_name!r}", code="API.NOT_FOUND", field="api")
            if not spec.public and principal is None:
                principal = self.authenticate(session, peer_admin)
            if principal is None:
                principal = self.admin_principal() if peer_admin else Principal("", "", "Anonymous")
            record.principal = principal
            if spec.admin and not principal.is_admin:
                raise PermissionDenied(
                    f"{api_name} needs an admin account", code="IDENTITY.ADMIN_ONLY"
                )
            if self.stopping and spec.mutating:
                raise Unavailable("the management node is stopping", code="NODE.STOPPING")
            if not isinstance(args, dict):
                raise InvalidArgument("args must be a JSON object", field="args")
            msg = decode_args(cls, args)
            resolve_message_refs(self, principal, msg)
            record.message = msg
            env = Envelope(
                api_name, msg, principal, id=request_id, resource_uuid=_routing_uuid(msg)
            )
            service = self.route(api_name)
            if spec.long:
                minted = None
                if isinstance(msg, CreateMessage) and not msg.resourceUuid:
                    # the job names what it creates from the start (zcli job wait -q)
                    msg.resourceUuid = minted = new_uuid()
                    self.minted.add(minted)
                uuid = getattr(msg, "uuid", None) or getattr(msg, "resourceUuid", None)

                async def work(handle: Any) -> Any:
                    env.job_uuid = handle.uuid
                    try:
                        return await self.bus.call(service, env)
                    finally:
                        if minted is not None:
                            self.minted.discard(minted)

                job_uuid, task = self.jobs.submit(
                    api_name, redacted_args(msg), principal, work, resource_uuid=uuid
                )
                record.job_uuid = job_uuid
                recorded = self.jobs.handles[job_uuid].recorded
                if on_job is not None:
                    on_job(job_uuid)
                if not wait:
                    await asyncio.shield(recorded)  # the row the reply shows
                    ok = True
                    return {"job": self.jobs.get(job_uuid)}, job_uuid
                result = record.result = await asyncio.shield(task)
                if finish is not None:
                    await finish(result)
                ok = True
                return result, job_uuid
            gate = self.gates.get(api_name)
            if gate is None:
                result = record.result = await self.bus.call(service, env)
            else:
                async with gate(peer):
                    result = record.result = await self.bus.call(service, env)
            if finish is not None:
                await finish(result)
            ok = True
            return result, None
        except ZmnError as exc:
            record.error = exc.code
            raise
        except Exception as exc:
            log.exception("API %s failed with an internal error", api_name)
            internal = InternalError(f"{type(exc).__name__}: {exc}")
            record.error = internal.code
            raise internal from exc
        finally:
            self.stats.in_flight -= 1
            record.seconds = time.perf_counter() - started
            self.stats.record(api_name, record.seconds, ok)
            cancelled = not ok and record.error is None  # the caller went away
            if cancelled:
                record.error = "CALL.CANCELLED"
            writes = notify(self, record)
            if writes and not cancelled:  # the audit row is durable before the reply
                await settle(writes)

    # ----------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        db_ok = True
        try:
            with self.db.tx() as s:
                s.execute(text("SELECT 1"))
        except Exception:
            db_ok = False
        return {
            "uuid": self.uuid,
            "name": self.config.node_name,
            "version": self.version,
            "pid": os.getpid(),
            "uptimeSeconds": round(time.time() - self.started_at, 1),
            "database": {"backend": self.db.backend, "url": _redact(self.db.url), "ok": db_ok},
            "bus": {"backend": self.bus.name, **self.bus.stats()},
            "services": sorted(self.services),
            "pluginErrors": self.plugin_errors,
            "endpoints": self.endpoints,
            "jobsInFlight": self.jobs.in_flight,
            "queueDepth": self.queues.depth(),
            "stopping": self.stopping,
        }


def _routing_uuid(msg: ApiMessage) -> str | None:
    """The resource a call is about, for the ring: its ``uuid``; None for creates.

    Jobs stay with the node that runs them (``WaitJob`` needs the running task).
    """
    if isinstance(msg, CreateMessage) or type(msg).__api__.resource == "Job":
        return None  # creational: handled where it arrives
    uuid = getattr(msg, "uuid", None)
    return uuid if isinstance(uuid, str) and uuid else None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
