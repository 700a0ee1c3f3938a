"""Membership: two nodes in one process sharing a real database (SQLite file, MariaDB, PostgreSQL).

Each "node" has its own engine on the same database, as two processes would. Short intervals
(0.2 s, five missed beats: a second of grace, so a loaded machine does not evict a live
node) keep the eviction tests fast.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text, update

from tests.conftest import need
from tests.support.services import port_open
from zmn.core.db import Database
from zmn.core.membership import EVICTED, RUNNING, STOPPED, Membership, db_utcnow
from zmn.core.models import ManagementNodeVO
from zmn.core.ring import HashRing

A = "a" * 32
B = "b" * 32
INTERVAL = 0.2
MAX_MISSED = 5

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mariadb", marks=pytest.mark.mariadb, id="mariadb"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'zmn.db'}"
        return
    name = "zmn_test_" + uuid.uuid4().hex[:10]
    if kind == "mariadb":
        need(port_open(3306), "MariaDB is not running on 127.0.0.1:3306")
        server, drop = "mysql+pymysql://root@127.0.0.1:3306/", f"DROP DATABASE IF EXISTS {name}"
    else:
        need(port_open(5432), "PostgreSQL is not running on 127.0.0.1:5432")
        server = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(drop))
        admin.dispose()


@dataclass
class Node:
    """One node's membership with everything its callbacks saw."""

    membership: Membership
    ring: HashRing = field(default_factory=HashRing)
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    fenced: int = 0

    @property
    def db(self) -> Database:
        return self.membership.db


@pytest.fixture
def cluster(db_url: str) -> Iterator[Callable[..., Node]]:
    databases: list[Database] = []

    def make(node_uuid: str, interval: Any = INTERVAL) -> Node:
        db = Database(db_url)
        if not databases:
            ManagementNodeVO.__table__.create(db.engine, checkfirst=True)  # type: ignore[attr-defined]
        databases.append(db)
        node = Node(Membership(db, node_uuid, interval=interval, max_missed=MAX_MISSED))

        def join(u: str) -> None:
            node.joined.append(u)
            node.ring.add(u)

        async def leave(u: str) -> None:  # coroutines work as callbacks too
            node.left.append(u)
            node.ring.remove(u)

        def fence() -> None:
            node.fenced += 1

        m = node.membership
        m.on_join, m.on_leave, m.on_fenced = join, leave, fence
        return node

    yield make
    for db in databases:
        db.dispose()


def state_of(db: Database, node_uuid: str) -> str:
    with db.tx() as s:
        return s.get_one(ManagementNodeVO, node_uuid).state


async def tick_for(seconds: float, *nodes: Node) -> None:
    """Rounds for the given nodes only, every interval, for about ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        for n in nodes:
            await n.membership.tick()
        await asyncio.sleep(INTERVAL)


async def test_nodes_see_each_other_join_and_build_the_same_ring(
    cluster: Callable[..., Node],
) -> None:
    a, b = cluster(A), cluster(B)
    a.membership.register()
    b.membership.register()
    assert await a.membership.tick() and await b.membership.tick()
    assert a.membership.members == b.membership.members == {A, B}
    assert a.joined == b.joined == [A, B]  # the first round reports everyone, this node too
    keys = [uuid.uuid4().hex for _ in range(200)]
    assert [a.ring.owner(k) for k in keys] == [b.ring.owner(k) for k in keys]
    await tick_for(0.5, a, b)  # beating in time: nobody is evicted
    assert a.left == b.left == [] and a.membership.evicted_by_me == []
    assert state_of(a.db, B) == state_of(a.db, A) == RUNNING


async def test_the_heartbeat_is_written_with_the_database_clock(
    cluster: Callable[..., Node],
) -> None:
    a = cluster(A)
    _session_time_zone_far_from_utc(a.db)
    a.membership.register()
    with a.db.tx() as s:  # a heartbeat from long ago
        s.execute(update(ManagementNodeVO).values(heartbeat=dt.datetime(2000, 1, 1)))
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        statements.append((statement, params))

    event.listen(a.db.engine, "before_cursor_execute", capture)
    try:
        assert a.membership.beat() is True
    finally:
        event.remove(a.db.engine, "before_cursor_execute", capture)
    (sql, params) = next((q, p) for q, p in statements if q.lstrip().upper().startswith("UPDATE"))
    flat = params.values() if isinstance(params, dict) else params
    assert not any(isinstance(p, dt.datetime) for p in flat), "heartbeat came from the local clock"
    assert re.search(r'heartbeat"?\s*=\s*\(?(strftime|UTC_TIMESTAMP|statement_timestamp)', sql), sql
    with a.db.tx() as s:
        now = s.execute(select(db_utcnow())).scalar_one()
        beat = s.get_one(ManagementNodeVO, A).heartbeat
    assert isinstance(now, dt.datetime) and now.tzinfo is None
    assert abs((now - beat).total_seconds()) < 5
    # The database's UTC, whatever the session time zone: close to the real UTC here.
    assert abs((now - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds()) < 60


async def test_a_silent_node_is_evicted_and_fences_itself(cluster: Callable[..., Node]) -> None:
    a, b = cluster(A), cluster(B)
    a.membership.register()
    b.membership.register()
    await tick_for(0.2, a, b)
    await tick_for(INTERVAL * MAX_MISSED + 0.4, a)  # b stops beating (hung, cut off)
    assert a.membership.evicted_by_me == [B]
    assert state_of(a.db, B) == EVICTED
    assert a.left == [B] and a.ring.nodes == [A] and a.membership.members == {A}
    # b wakes up, finds itself evicted, fences itself once and stays down.
    assert await b.membership.tick() is False
    assert b.fenced == 1 and b.membership.fenced
    assert await b.membership.tick() is False
    assert b.fenced == 1
    assert state_of(b.db, B) == EVICTED  # its beat did not bring it back


async def test_after_a_database_outage_the_first_node_back_waits_before_evicting(
    cluster: Callable[..., Node],
) -> None:
    a, b = cluster(A), cluster(B)
    a.membership.register()
    b.membership.register()
    with a.db.tx() as s:  # nobody could beat while the database was away
        s.execute(update(ManagementNodeVO).values(heartbeat=dt.datetime(2000, 1, 1)))
    a2 = cluster(A)  # a's process restarted meanwhile: it has not been beating for long
    a2.membership.register()
    assert await a2.membership.tick()
    assert state_of(a.db, B) == RUNNING and a2.membership.evicted_by_me == []
    await tick_for(INTERVAL * MAX_MISSED + 0.3, a2, b)  # b is back in time: it stays
    assert state_of(a.db, B) == RUNNING and b.fenced == 0
    assert a2.membership.members == b.membership.members == {A, B}


async def test_a_clean_leave_is_not_an_eviction_and_a_restart_rejoins(
    cluster: Callable[..., Node],
) -> None:
    a, b = cluster(A), cluster(B)
    a.membership.register()
    b.membership.register()
    await tick_for(0.2, a, b)
    b.membership.leave()
    await a.membership.tick()
    assert a.left == [B] and state_of(a.db, B) == STOPPED
    await tick_for(INTERVAL * MAX_MISSED + 0.3, a)
    assert a.membership.evicted_by_me == [] and state_of(a.db, B) == STOPPED
    b.membership.register()  # the node process starts again
    await a.membership.tick()
    assert a.joined == [A, B, B] and a.ring.nodes == sorted([A, B])


async def test_run_loops_evict_a_paused_node_which_then_stops(cluster: Callable[..., Node]) -> None:
    pause = {"b": INTERVAL}
    a, b = cluster(A), cluster(B, interval=lambda: pause["b"])
    tasks = [asyncio.create_task(n.membership.run()) for n in (a, b)]
    try:
        await _until(lambda: a.membership.members == b.membership.members == {A, B})
        pause["b"] = 1.5  # b's loop stalls, as a stopped-the-world process would
        await _until(lambda: a.left == [B], timeout=5)
        assert state_of(a.db, B) == EVICTED and not tasks[1].done()
        await asyncio.wait_for(tasks[1], 5)  # b wakes, beats, is fenced, and its loop ends
        assert b.fenced == 1
        assert not tasks[0].done() and a.membership.members == {A}
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _session_time_zone_far_from_utc(db: Database) -> None:
    """NOW() in MariaDB and now() in PostgreSQL follow this; the heartbeat must not."""
    statement = {"mysql": "SET time_zone = '+09:00'", "postgresql": "SET TIME ZONE 'Asia/Tokyo'"}
    sql = statement.get(db.engine.dialect.name)
    if sql is None:
        return
    db.engine.dispose()

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(sql)
        cur.close()

    event.listen(db.engine, "connect", on_connect)


async def _until(check: Callable[[], bool], timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
