"""Cluster membership: heartbeats on the database clock, eviction, join/leave, self-fencing.

Each node writes its heartbeat into ``management_node`` with the database's own clock
(:class:`db_utcnow` renders the backend's "now" in UTC inside the UPDATE), and every node
compares heartbeats with that same clock. Node clocks are never compared with each other, so
a node whose clock is off by minutes is judged like any other.

One round (:meth:`Membership.tick`), every ``managementNode.heartbeat.interval`` seconds:

1. beat: ``UPDATE ... SET heartbeat = <db now> WHERE uuid = me AND state = 'Running'``.
   No row updated means a survivor evicted this node (or its row is gone): the node calls
   ``on_fenced`` and stops the loop; it must stop serving, because the survivors are already
   taking over its resources. Only a restart brings it back (:meth:`Membership.register`).
2. sweep: read the database's now, mark ``Evicted`` every other ``Running`` node whose heartbeat
   is older than ``interval * maxMissed``. The UPDATE repeats the condition, so a node that beat
   in the meantime is left alone, and of several survivors sweeping at once only one flips
   the row. Beat and eviction are both conditional single-row updates, so they serialise in the
   database: a node either beat in time or finds itself evicted; never both.
   A node judges others only once it has itself beaten for a whole grace period: after a
   database outage every heartbeat is old, and the first node back must not evict the rest
   before they had their chance to beat.
3. diff the ``Running`` set with the last one and call ``on_join`` / ``on_leave`` (the first
   round reports every running node, this one included, so a ring can be built from it).

Callbacks may be plain functions or coroutines; an error in one is logged, not fatal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from zmn.core.db import Database, Timestamp
from zmn.core.models import ManagementNodeVO

log = logging.getLogger("zmn.membership")

RUNNING, STOPPED, EVICTED = "Running", "Stopped", "Evicted"

Callback = Callable[..., Any]
Setting = float | Callable[[], float]


class db_utcnow(FunctionElement[dt.datetime]):
    """The database server's current UTC time, as a naive timestamp like ``db.utcnow()``.

    Plain ``CURRENT_TIMESTAMP`` would do the job on SQLite only: MariaDB's ``NOW()`` and
    PostgreSQL's ``now()`` are in the session time zone, and SQLite's has whole seconds.
    """

    type = Timestamp
    inherit_cache = True


@compiles(db_utcnow)
def _utcnow_default(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(db_utcnow, "sqlite")
def _utcnow_sqlite(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


@compiles(db_utcnow, "mysql")
@compiles(db_utcnow, "mariadb")
def _utcnow_mysql(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    return "UTC_TIMESTAMP(6)"


@compiles(db_utcnow, "postgresql")
def _utcnow_postgresql(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    return "(statement_timestamp() AT TIME ZONE 'UTC')"


def _value(setting: Setting) -> float:
    return float(setting() if callable(setting) else setting)


class Membership:
    """Heartbeat and membership of one node; drive it with :meth:`run` or :meth:`tick`."""

    def __init__(
        self,
        db: Database,
        node_uuid: str,
        *,
        interval: Setting = 2.0,
        max_missed: Setting = 5,
        on_join: Callback | None = None,
        on_leave: Callback | None = None,
        on_fenced: Callback | None = None,
        name: str = "",
        version: str = "",
        endpoints: Callable[[], list[str]] | None = None,
    ) -> None:
        self.db = db
        self.node_uuid = node_uuid
        self.interval = interval
        self.max_missed = max_missed
        self.on_join = on_join
        self.on_leave = on_leave
        self.on_fenced = on_fenced
        self.name = name or socket.gethostname()
        self.version = version
        self.endpoints = endpoints
        self.members: set[str] = set()  # Running nodes as of the last round
        self.evicted_by_me: list[str] = []
        self.fenced = False
        self._stopping = False
        self._beating_since: float | None = None

    def _endpoints(self) -> str:
        return ",".join(self.endpoints()) if self.endpoints else ""

    # ------------------------------------------------------------------ database

    def register(self) -> None:
        """Write this node's row as Running with a fresh heartbeat (start or restart)."""
        with self.db.tx() as s:
            row = s.get(ManagementNodeVO, self.node_uuid)
            if row is None:
                row = ManagementNodeVO(uuid=self.node_uuid)
                s.add(row)
            row.name = self.name
            row.hostName = socket.gethostname()
            row.pid = os.getpid()
            row.state = RUNNING
            row.version = self.version
            row.endpoints = self._endpoints()
            row.heartbeat = db_utcnow()  # type: ignore[assignment]
        self.fenced = False
        self._stopping = False
        self._beating_since = None

    def beat(self) -> bool:
        """Refresh the heartbeat; False if this node is no longer Running (evicted)."""
        values: dict[str, Any] = {"heartbeat": db_utcnow(), "lastOpDate": db_utcnow()}
        if self.endpoints is not None:
            values["endpoints"] = self._endpoints()
        with self.db.tx() as s:
            result = s.execute(
                update(ManagementNodeVO)
                .where(ManagementNodeVO.uuid == self.node_uuid, ManagementNodeVO.state == RUNNING)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def grace(self) -> float:
        """Seconds without a heartbeat after which a node is evicted."""
        return _value(self.interval) * _value(self.max_missed)

    def sweep(self, evict: bool = True) -> set[str]:
        """Evict silent nodes; return the Running set. Eviction uses the database clock only."""
        grace = dt.timedelta(seconds=self.grace())
        with self.db.tx() as s:
            now = s.execute(select(db_utcnow())).scalar_one()
            cutoff = now - grace
            silent = (
                ManagementNodeVO.state == RUNNING,
                ManagementNodeVO.heartbeat < cutoff,
                ManagementNodeVO.uuid != self.node_uuid,
            )
            stale = s.scalars(select(ManagementNodeVO.uuid).where(*silent)).all() if evict else []
            evicted: list[str] = []
            for uuid in stale:
                result = s.execute(
                    update(ManagementNodeVO)
                    .where(ManagementNodeVO.uuid == uuid, *silent)
                    .values(state=EVICTED, lastOpDate=now)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    evicted.append(uuid)
            running = set(
                s.scalars(select(ManagementNodeVO.uuid).where(ManagementNodeVO.state == RUNNING))
            )
        for uuid in evicted:
            log.warning("evicted management node %s: no heartbeat for %s", uuid, grace)
        self.evicted_by_me.extend(evicted)
        return running

    def leave(self) -> None:
        """Record a clean stop, so the others see this node leave without waiting for eviction."""
        self._stopping = True
        with self.db.tx() as s:
            s.execute(
                update(ManagementNodeVO)
                .where(ManagementNodeVO.uuid == self.node_uuid, ManagementNodeVO.state == RUNNING)
                .values(state=STOPPED)
                .execution_options(synchronize_session=False)
            )

    # ------------------------------------------------------------------ rounds

    async def tick(self) -> bool:
        """One round: beat, sweep, callbacks. False once this node is fenced."""
        if self.fenced:
            return False
        loop = asyncio.get_running_loop()
        try:
            beat = self.beat()
        except Exception:
            self._beating_since = None
            raise
        if not beat:
            self.fenced = True
            log.error(
                "management node %s was evicted by the cluster: fencing itself", self.node_uuid
            )
            await _invoke(self.on_fenced)
            return False
        if self._beating_since is None:
            self._beating_since = loop.time()
        # Judge others only after beating for a whole grace period (see the module docstring).
        running = self.sweep(evict=loop.time() - self._beating_since >= self.grace())
        joined, left = running - self.members, self.members - running
        self.members = running
        for uuid in sorted(joined):
            await _invoke(self.on_join, uuid)
        for uuid in sorted(left):
            await _invoke(self.on_leave, uuid)
        return True

    async def run(self) -> None:
        """Register, then a round every interval until fenced or cancelled."""
        self.register()
        while not self._stopping:
            try:
                if not await self.tick():
                    return
            except Exception:  # the database being away for a moment must not end membership
                log.exception("membership round failed")
            await asyncio.sleep(_value(self.interval))


async def _invoke(callback: Callback | None, *args: Any) -> None:
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("membership callback %r failed", callback)
