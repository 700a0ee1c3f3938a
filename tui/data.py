"""API access for the dashboard: one connection, reconnect with backoff, events, caches.

:class:`DataSource` owns the :class:`~zmn.client.AsyncClient`. Its :meth:`DataSource.run`
loop connects, fetches the catalogue (refetched only when the greeting's hash changes),
subscribes to every event and hands each event to ``on_event``. When the connection drops it
reports itself *stale since* that moment and reconnects with exponential backoff; screens keep
showing the last data they had. Nothing here imports Textual, so it is testable on its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tui.catalogue import Catalogue
from zmn.api.errors import Unavailable, ZmnError
from zmn.api.wire import EVENTS_LOST_PATH
from zmn.client import AsyncClient

STATS_KEYS = (
    "apiRatePerSecond",
    "p50ms",
    "p95ms",
    "p99ms",
    "apiInFlight",
    "jobsInFlight",
    "queueDepth",
)


class ClientLike(Protocol):
    """What the dashboard needs of :class:`~zmn.client.AsyncClient` (a fake implements it too)."""

    hello: dict[str, Any]
    events: asyncio.Queue[dict[str, Any]]
    closed_error: ZmnError | None

    async def connect(self) -> Any: ...
    async def close(self) -> None: ...
    async def call(self, api: str, args: dict[str, Any] | None = None, **kw: Any) -> Any: ...

    @property
    def connected(self) -> bool: ...


ClientFactory = Callable[[str, "str | None"], ClientLike]


METRICS_APIS = {"VmInstance": "GetVmMetrics", "Host": "GetHostMetrics"}


@dataclass
class Status:
    """Connection state for the header: ``connecting``, ``live`` or ``stale``."""

    state: str = "connecting"
    stale_since: float | None = None  # when the last live connection was lost
    error: str = ""
    attempt: int = 0
    retry_at: float | None = None
    node: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.state == "live"


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    start: int
    next: str | None = None  # keyset cursor of the following page (None: the last page)
    keyset: bool = False  # the API pages by cursor (``after``/``next``), not by offset


class StatsHistory:
    """The last samples of each management-node statistic, for sparklines."""

    def __init__(self, size: int = 120) -> None:
        self.series: dict[str, deque[float]] = {k: deque(maxlen=size) for k in STATS_KEYS}
        self.last: dict[str, Any] = {}

    def add(self, stats: dict[str, Any]) -> None:
        self.last = stats
        for key, series in self.series.items():
            value = stats.get(key)
            if isinstance(value, int | float):
                series.append(float(value))


class Jobs:
    """Jobs seen on ``/job/*`` events: running ones and the recently finished."""

    KEEP_FINISHED = 30.0

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    def apply(self, path: str, data: dict[str, Any]) -> bool:
        if not path.startswith("/job/"):
            return False
        uuid = data.get("jobUuid") or data.get("uuid")
        if not uuid:
            return False
        job = self.jobs.setdefault(
            uuid, {"uuid": uuid, "name": "", "state": "Running", "progress": 0, "text": ""}
        )
        for key in ("name", "state", "progress", "text", "error"):
            if data.get(key) not in (None, ""):
                job[key] = data[key]
        job["seen"] = time.time()
        return True

    def visible(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        for uuid in [
            u
            for u, j in self.jobs.items()
            if j["state"] != "Running" and now - j["seen"] > self.KEEP_FINISHED
        ]:
            del self.jobs[uuid]
        return sorted(self.jobs.values(), key=lambda j: (j["state"] != "Running", -j["seen"]))

    @property
    def running(self) -> int:
        return sum(1 for j in self.jobs.values() if j["state"] == "Running")


def _default_factory(endpoint: str, session: str | None) -> ClientLike:
    return AsyncClient(endpoint, session)


class DataSource:
    """The dashboard's single connection to the node, with caches the screens share."""

    def __init__(
        self,
        endpoint: str,
        session: str | None = None,
        *,
        client_factory: ClientFactory | None = None,
        backoff: tuple[float, float] = (0.5, 10.0),
        events_kept: int = 200,
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self.factory = client_factory or _default_factory
        self.backoff = backoff
        self.client: ClientLike | None = None
        self.catalogue: Catalogue | None = None
        self.catalogue_hash = ""
        self.status = Status()
        self.stats = StatsHistory()
        self.events: deque[dict[str, Any]] = deque(maxlen=events_kept)
        self.jobs = Jobs()
        self.names: dict[str, dict[str, str]] = {}  # type -> uuid -> name
        self.user = ""  # whose session: user or account UUID, "peer" for the socket owner
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self.on_status: Callable[[Status], None] | None = None
        self.on_catalogue: Callable[[Catalogue], None] | None = None
        self._stop = asyncio.Event()

    # ----------------------------------------------------------------- connection loop

    async def run(self) -> None:
        """Connect, pump events, and reconnect with backoff until :meth:`stop`."""
        attempt = 0
        while not self._stop.is_set():
            client = self.factory(self.endpoint, self.session)
            error: ZmnError | None = None
            try:
                await client.connect()
                await self._on_connected(client)
                attempt = 0
                await self._pump(client)
                error = client.closed_error
            except ZmnError as exc:
                error = exc
            except OSError as exc:
                error = Unavailable(str(exc), code="NODE.UNREACHABLE")
            finally:
                self.client = None
                try:
                    await client.close()
                except Exception:  # noqa: S110 - closing a broken connection may fail again
                    pass
            if self._stop.is_set():
                break
            attempt += 1
            base, cap = self.backoff
            delay = min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)  # noqa: S311 - retry jitter, not a secret
            was_live = self.status.state == "live" or self.status.stale_since is not None
            self._set_status(
                "stale" if was_live else "connecting",
                error=error.message
                if isinstance(error, ZmnError)
                else str(error or "connection closed"),
                attempt=attempt,
                retry_at=time.time() + delay,
                stale_since=self.status.stale_since or (time.time() if was_live else None),
            )
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass

    async def _on_connected(self, client: ClientLike) -> None:
        hello_hash = str(client.hello.get("catalogueHash", ""))
        if self.catalogue is None or hello_hash != self.catalogue_hash:
            result = await client.call("GetApiCatalogue")
            self.catalogue = Catalogue(result["catalogue"])
            self.catalogue_hash = str(result.get("hash") or hello_hash)
            if self.on_catalogue:
                self.on_catalogue(self.catalogue)
        await client.call("Subscribe", {"paths": ["/**"]})
        self.user = await self._whoami(client)
        node: dict[str, Any] = dict(client.hello)
        try:
            node.update(await client.call("GetManagementNodeStatus"))
        except ZmnError:
            pass  # a non-admin session may not see the status; the greeting is enough
        self.client = client
        self._set_status("live", node=node, stale_since=None)

    async def _whoami(self, client: ClientLike) -> str:
        if not self.session:
            return "peer" if client.hello.get("auth") == "peer" else "anonymous"
        try:
            found = await client.call("ValidateSession", {"sessionUuid": self.session})
        except ZmnError:
            return f"session:{self.session}"
        return str(found.get("userUuid") or found.get("accountUuid") or f"session:{self.session}")

    async def _pump(self, client: ClientLike) -> None:
        while not self._stop.is_set():
            try:
                frame = await asyncio.wait_for(client.events.get(), 0.5)
            except TimeoutError:
                if not client.connected:
                    return
                continue
            if frame.get("path") == EVENTS_LOST_PATH:
                # the node dropped events this dashboard was too slow to take: what it
                # shows may be stale, so every screen reloads as after a reconnect
                self._set_status("live")
                continue
            self._record(frame)
            if self.on_event:
                self.on_event(frame)

    def _record(self, frame: dict[str, Any]) -> None:
        self.events.append(frame)
        path, data = str(frame.get("path", "")), frame.get("data") or {}
        self.jobs.apply(path, data)
        inv = data.get("inventory") if isinstance(data, dict) else None
        kind = data.get("resourceType") if isinstance(data, dict) else None
        if isinstance(inv, dict) and kind and inv.get("uuid") and "name" in inv:
            if path.endswith("/deleted"):
                self.names.get(kind, {}).pop(inv["uuid"], None)
            else:
                self.names.setdefault(kind, {})[inv["uuid"]] = str(inv["name"])

    def _set_status(self, state: str, **changes: Any) -> None:
        node = changes.pop("node", None)
        self.status = Status(
            state=state, node=node if node is not None else self.status.node, **changes
        )
        if self.on_status:
            self.on_status(self.status)

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        self.stop()
        if self.client is not None:
            await self.client.close()

    # ----------------------------------------------------------------- calls

    async def call(self, api: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        if self.client is None:
            raise Unavailable(
                f"not connected to {self.endpoint}: {self.status.error or 'connecting'}",
                code="NODE.NOT_CONNECTED",
            )
        try:
            return await self.client.call(api, args, **kw)
        except OSError as exc:
            # AsyncClient raises the socket's own error when a write fails on a dead
            # connection; to the screens it is the same as any other lost connection.
            raise Unavailable(
                f"lost the connection to {self.endpoint}: {exc}", code="NODE.CONNECTION_CLOSED"
            ) from None

    async def query(
        self,
        type_name: str,
        conditions: list[str] | None = None,
        *,
        limit: int = 100,
        start: int = 0,
        sort_by: str | None = None,
        descending: bool = False,
        fields: list[str] | None = None,
        after: str | None = None,
        count: bool = True,
    ) -> Page:
        """One page. Where the query API takes a keyset cursor (``after``), ``after`` asks
        for the page following the one whose reply carried it as ``next``; ``start`` then
        only numbers the rows. Otherwise ``start`` is the offset."""
        keyset = self.keyset(type_name)
        args: dict[str, Any] = {"conditions": conditions or [], "limit": limit}
        if keyset:
            if after:
                args["after"] = after
        elif start:
            args["start"] = start
        if count:
            args["replyWithCount"] = True
        if sort_by:
            args["sortBy"] = sort_by
            args["sortDirection"] = "desc" if descending else "asc"
        if fields:
            args["fields"] = fields
        result = await self.call(f"Query{type_name}", args)
        rows = result.get("inventories", [])
        if fields is None or "name" in fields:
            cache = self.names.setdefault(type_name, {})
            for row in rows:
                if row.get("uuid") and "name" in row:
                    cache[row["uuid"]] = str(row["name"])
        cursor = result.get("next") if keyset else None
        return Page(
            rows,
            int(result.get("total", start + len(rows))),
            start,
            next=str(cursor) if cursor else None,
            keyset=keyset,
        )

    def keyset(self, type_name: str) -> bool:
        """Whether ``Query<type>`` pages by cursor: the catalogue lists an ``after`` param."""
        catalogue = self.catalogue
        return catalogue is not None and catalogue.has_param(f"Query{type_name}", "after")

    async def groups(self, type_name: str, field_name: str) -> dict[str, int]:
        result = await self.call(f"Query{type_name}", {"groupBy": field_name})
        return {str(g.get(field_name)): int(g.get("total", 0)) for g in result.get("groups", [])}

    async def count(self, type_name: str, conditions: list[str] | None = None) -> int:
        result = await self.call(
            f"Query{type_name}", {"conditions": conditions or [], "count": True}
        )
        return int(result.get("total", 0))

    async def resolve_names(self, type_name: str, uuids: set[str]) -> dict[str, str]:
        """Names of these UUIDs (cached; unknown ones fetched in one query)."""
        cache = self.names.setdefault(type_name, {})
        missing = sorted(u for u in uuids if u and u not in cache)
        if missing and self.catalogue and type_name in self.catalogue.resources:
            for i in range(0, len(missing), 500):
                chunk = missing[i : i + 500]
                page = await self.query(
                    type_name,
                    [f"uuid?={','.join(chunk)}"],
                    limit=len(chunk),
                    fields=["uuid", "name"],
                )
                for row in page.rows:
                    cache[row["uuid"]] = str(row.get("name") or "")
                for uuid in chunk:
                    cache.setdefault(uuid, "")  # gone or nameless: do not ask again
        return {u: cache.get(u, "") for u in uuids}

    async def usage(self, type_name: str, uuids: list[str]) -> dict[str, dict[str, Any]]:
        """Recent usage of a page of VMs or hosts: one ``GetVmMetrics``/``GetHostMetrics``
        call for all of them, ``{uuid: {"latest": {...} | None, "samples": [...]}}``; empty
        for other types."""
        api = METRICS_APIS.get(type_name)
        if api is None or not uuids:
            return {}
        reply = await self.call(api, {"uuids": uuids})
        return {str(r["uuid"]): r for r in reply.get("results", []) if r.get("uuid")}

    async def poll_stats(self) -> dict[str, Any] | None:
        if self.client is None:
            return None
        stats: dict[str, Any] = await self.call("GetManagementNodeStats")
        self.stats.add(stats)
        return stats

    async def run_action(
        self,
        api: str,
        uuids: list[str],
        args: dict[str, Any],
        *,
        long: bool = False,
        parallel: int = 8,
        subject: str = "uuid",
    ) -> list[tuple[str, ZmnError | None]]:
        """Call ``api`` once per UUID (bounded concurrency); long APIs detach and report as jobs.

        ``subject`` is the parameter the UUID goes in (``vmInstanceUuid`` for ``MigrateVm``)."""
        gate = asyncio.Semaphore(parallel)

        async def one(uuid: str) -> tuple[str, ZmnError | None]:
            async with gate:
                try:
                    await self.call(api, {subject: uuid, **args}, wait=not long)
                except ZmnError as exc:
                    return uuid, exc
                return uuid, None

        return list(await asyncio.gather(*(one(u) for u in uuids)))


async def gather_quietly(*aws: Awaitable[Any]) -> list[Any]:
    """Await all; exceptions become values (a panel that fails must not stop the others)."""
    return list(await asyncio.gather(*aws, return_exceptions=True))
