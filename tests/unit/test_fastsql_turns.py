"""The ``db.fast()`` blocks of one event-loop turn share one SQLite transaction
(zmn/core/fastsql.py, ``TurnTransaction``): each block is a savepoint, the transaction commits
at the next turn or as soon as anything needs its writes durable or visible elsewhere, and a
write that is lost is never acknowledged.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, bindparam, exc, insert, select, update

from zmn.core import fastsql
from zmn.core.db import Database

MD = MetaData()
T = Table("turn_t", MD, Column("uuid", String(32), primary_key=True), Column("name", String(64)))
INSERT = insert(T)
RENAME = update(T).where(T.c.uuid == bindparam("_uuid")).values(name=bindparam("name"))
NAMES = select(T.c.name).order_by(T.c.name)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'turns.db'}")
    MD.create_all(database.engine)
    database._fast.writer_at = 0.0  # the DDL above was a write from a thread without a loop
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _commit_every_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin what each turn commits: no grouping of busy turns (tested on its own
    below, with its window set)."""
    monkeypatch.setattr(fastsql, "GROUP_WINDOW", 0.0)


def committed(db: Database) -> list[str]:
    """What another connection sees: committed rows only."""
    con = sqlite3.connect(db.url.removeprefix("sqlite:///"))
    try:
        return [r[0] for r in con.execute("SELECT name FROM turn_t ORDER BY name")]
    finally:
        con.close()


def commits_of(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the real commits of turn transactions."""
    count = [0]
    real = fastsql.TurnTransaction.commit

    def commit(self: Any) -> Any:
        if self.open and not self.depth:
            count[0] += 1
        return real(self)

    monkeypatch.setattr(fastsql.TurnTransaction, "commit", commit)
    return count


async def test_blocks_of_one_turn_commit_once_at_the_next_turn(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = commits_of(db, monkeypatch)
    for i in range(5):
        with db.fast() as conn:
            conn.execute(INSERT, {"uuid": f"u{i}", "name": f"n{i}"})
        with db.fast() as conn:  # the same transaction reads its own writes
            assert conn.execute(NAMES).scalars().all()[-1] == f"n{i}"
    assert committed(db) == []  # not yet: the turn has not ended
    await asyncio.sleep(0)
    assert committed(db) == [f"n{i}" for i in range(5)]
    assert commits[0] == 1


async def test_a_block_that_raises_takes_back_only_its_own_writes(db: Database) -> None:
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "a", "name": "kept"})
    with pytest.raises(ValueError), db.fast() as conn:
        conn.execute(INSERT, {"uuid": "b", "name": "undone"})
        raise ValueError("the step failed")
    with pytest.raises(exc.IntegrityError), db.fast() as conn:
        conn.execute(INSERT, {"uuid": "c", "name": "also undone"})
        conn.execute(INSERT, {"uuid": "a", "name": "duplicate key"})
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "d", "name": "kept too"})
    fastsql.settle()
    assert committed(db) == ["kept", "kept too"]


async def test_a_nested_block_is_a_savepoint_of_the_outer_one(db: Database) -> None:
    with pytest.raises(ValueError), db.fast() as outer:
        outer.execute(INSERT, {"uuid": "o", "name": "outer"})
        with db.fast() as inner:
            inner.execute(INSERT, {"uuid": "i", "name": "inner"})
        raise ValueError("the outer block fails after the inner one ended")
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "n", "name": "next"})
    fastsql.settle()
    assert committed(db) == ["next"]


async def test_savepoints_are_made_by_the_first_write_of_a_block(db: Database) -> None:
    sent: list[str] = []
    with db.fast() as conn:
        conn.dbapi_connection.set_trace_callback(sent.append)
        list(conn.execute(NAMES))
    with db.fast() as conn:  # a block that only reads costs no savepoint
        list(conn.execute(NAMES))
    assert not [s for s in sent if "fast" in s]
    # an outer block that read, then a nested one that wrote: both savepoints, outer first,
    # so the outer block failing afterwards still takes the inner write back
    with pytest.raises(ValueError), db.fast() as outer:
        list(outer.execute(NAMES))
        with db.fast() as inner:
            inner.execute(INSERT, {"uuid": "i", "name": "inner"})
        raise ValueError("the outer block fails after the inner one ended")
    assert [s for s in sent if "fast" in s] == [
        "SAVEPOINT fast1",
        "SAVEPOINT fast2",
        "RELEASE fast2",
        "ROLLBACK TO fast1",
        "RELEASE fast1",
    ]
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "n", "name": "next"})
        conn.dbapi_connection.set_trace_callback(None)
    fastsql.settle()
    assert committed(db) == ["next"]


async def test_a_sqlalchemy_statement_on_the_loop_thread_commits_the_turn_first(
    db: Database,
) -> None:
    """Without the engine hook the write below waits 30 s for the turn's write lock (held on
    this very thread) and fails with "database is locked"."""
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "f", "name": "fast"})
    with db.engine.begin() as core:  # another pooled connection, same thread
        core.execute(RENAME, {"_uuid": "f", "name": "renamed by core"})
    assert committed(db) == ["renamed by core"]


async def test_a_sqlalchemy_write_inside_a_block_is_refused_not_deadlocked(
    db: Database,
) -> None:
    with pytest.raises(RuntimeError, match=r"inside a db\.fast"), db.fast() as conn:
        conn.execute(INSERT, {"uuid": "x", "name": "fast"})
        with db.engine.begin() as core:
            core.execute(RENAME, {"_uuid": "x", "name": "core"})
    fastsql.settle()
    assert committed(db) == []


async def test_work_handed_to_a_thread_sees_the_turns_writes(db: Database) -> None:
    fastsql.settle_before_threads(asyncio.get_running_loop())
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "t", "name": "for the thread"})
    seen = await asyncio.to_thread(committed, db)
    assert seen == ["for the thread"]


async def test_settle_makes_the_writes_durable_now(db: Database) -> None:
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "s", "name": "settled"})
    assert fastsql.settle() is None
    assert committed(db) == ["settled"]


class FailingCommit:
    """The kept DBAPI connection, whose next commit fails as a full disk would."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def commit(self) -> None:
        self.real.rollback()
        raise sqlite3.OperationalError("database or disk is full")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def commit_failing(turn: Any) -> Exception | None:
    """Commit ``turn`` with its next commit failing as a full disk would; the error."""
    conn = turn.connection()
    real = conn.dbapi_connection
    conn.dbapi_connection = FailingCommit(real)
    try:
        err: Exception | None = turn.commit()
        return err
    finally:
        conn.dbapi_connection = real


async def test_a_failed_commit_is_told_to_every_task_whose_writes_it_lost(db: Database) -> None:
    async def writer(uuid: str, go_on: asyncio.Event) -> str:
        with db.fast() as conn:
            conn.execute(INSERT, {"uuid": uuid, "name": uuid})
        await go_on.wait()
        try:
            with db.fast() as conn:  # the task's next block
                conn.execute(INSERT, {"uuid": uuid + "2", "name": uuid + "2"})
        except exc.OperationalError as err:
            return f"told: {err.orig}"
        return "not told"

    go_on = asyncio.Event()
    tasks = [asyncio.create_task(writer(u, go_on)) for u in ("a", "b")]
    await asyncio.sleep(0)  # both wrote in this turn: one open transaction
    turn = next(t for t in fastsql._THREAD.turns if t.cache is db._fast)
    assert turn.open
    assert isinstance(commit_failing(turn), sqlite3.OperationalError)
    go_on.set()
    assert await asyncio.gather(*tasks) == ["told: database or disk is full"] * 2
    fastsql.settle()
    assert committed(db) == []


async def test_an_untouched_task_is_not_told(db: Database) -> None:
    async def reader() -> list[str]:
        with db.fast() as conn:
            return list(conn.execute(NAMES).scalars())

    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "r", "name": "read"})
    assert await asyncio.create_task(reader()) == ["read"]


def test_a_worker_thread_keeps_one_transaction_per_block(db: Database) -> None:
    """No loop on the thread: every block is its own transaction, committed when it ends."""
    seen: list[list[str]] = []

    def work() -> None:
        with db.fast() as conn:
            conn.execute(INSERT, {"uuid": "w", "name": "worker"})
        seen.append(committed(db))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [["worker"]]


async def test_a_thread_that_writes_is_not_starved_by_busy_turns(db: Database) -> None:
    """The loop writes in every turn without pause, and works on after its block in the same
    turn; a thread's write through SQLAlchemy gets the lock within 3 s (without the writer
    window the turn's transaction holds the lock all the time but for a few microseconds
    between turns, and the thread waits until the loop stops at 8 s)."""
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "busy", "name": "0"})
        conn.execute(INSERT, {"uuid": "thread", "name": "before"})
    fastsql.settle()
    took: list[float] = []

    def thread_write() -> None:
        t0 = time.monotonic()
        with db.engine.begin() as core:
            core.execute(RENAME, {"_uuid": "thread", "name": "written by the thread"})
        took.append(time.monotonic() - t0)

    worker = threading.Thread(target=thread_write)
    deadline = time.monotonic() + 8
    n = 0
    started = False
    while not took and time.monotonic() < deadline:
        n += 1
        with db.fast() as conn:
            conn.execute(RENAME, {"_uuid": "busy", "name": str(n)})
        time.sleep(0.004)  # the rest of the turn's work, with the turn's transaction open
        if not started and n == 20:  # the loop's turns are busy from here on
            worker.start()
            started = True
        await asyncio.sleep(0)
    fastsql.settle()
    worker.join(30)
    assert took and took[0] < 3, took
    assert "written by the thread" in committed(db)


async def test_replies_of_one_turn_wait_for_its_one_commit(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``committed()`` (before a reply) does not commit: it waits for the turn's commit, so
    the callers of one turn share one commit and none hears back before its row is on disk."""
    commits = commits_of(db, monkeypatch)
    seen: dict[str, list[str]] = {}

    async def call(uuid: str) -> None:
        with db.fast() as conn:
            conn.execute(INSERT, {"uuid": uuid, "name": uuid})
        await fastsql.committed()
        seen[uuid] = committed(db)

    await asyncio.gather(*(call(u) for u in ("a", "b", "c")))
    assert commits[0] == 1
    assert seen == {u: ["a", "b", "c"] for u in ("a", "b", "c")}
    await fastsql.committed()  # nothing open: back at once
    assert commits[0] == 1


async def test_a_reply_waiting_for_a_failed_commit_gets_its_error(db: Database) -> None:
    async def call() -> None:
        with db.fast() as conn:
            conn.execute(INSERT, {"uuid": "x", "name": "x"})
        await fastsql.committed()

    task = asyncio.create_task(call())
    await asyncio.sleep(0)  # the task wrote and waits; the turn's commit is the next turn's
    turn = fastsql.open_turn()
    assert turn is not None and turn.waiters
    commit_failing(turn)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        await task
    assert committed(db) == []


async def test_blocks_share_turns_again_once_a_threads_write_is_committed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a thread's write transaction is open, each block commits on its own (the thread
    gets the lock between them); once it has ended, the blocks of a turn share one commit
    again at once, not only when the writer window has run out."""
    done = threading.Event()

    def thread_write() -> None:
        with db.engine.begin() as core:
            core.execute(INSERT, {"uuid": "t", "name": "thread"})
        done.set()

    worker = threading.Thread(target=thread_write)
    worker.start()
    worker.join(30)
    assert done.is_set()
    assert db._fast.writer_at == 0.0  # the thread's transaction ended
    commits = commits_of(db, monkeypatch)
    for i in range(4):
        with db.fast() as conn:
            conn.execute(INSERT, {"uuid": f"u{i}", "name": f"n{i}"})
    await asyncio.sleep(0)
    assert commits[0] == 1


async def test_a_busy_loop_commits_at_most_once_a_window_and_an_idle_one_at_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While other callbacks are ready, the turns' writes share one commit a GROUP_WINDOW; a
    caller waiting for durability is woken by it; once the loop has nothing else to run, the
    open transaction commits at the next turn."""
    monkeypatch.setattr(fastsql, "GROUP_WINDOW", 0.05)
    commits = commits_of(db, monkeypatch)
    turns = 0

    async def busy(i: int) -> None:
        nonlocal turns
        for j in range(30):  # a write and a yield: every turn has work ready
            with db.fast() as conn:
                conn.execute(INSERT, {"uuid": f"b{i}-{j}", "name": "busy"})
            turns += 1
            await asyncio.sleep(0)

    t0 = time.monotonic()
    await asyncio.gather(*(busy(i) for i in range(3)))
    busy_for = time.monotonic() - t0
    assert turns == 90
    assert commits[0] <= busy_for / 0.05 + 1, (commits[0], busy_for)
    await fastsql.committed()  # woken by the commit that makes its writes durable
    assert len(committed(db)) == 90
    before = commits[0]
    t0 = time.monotonic()
    with db.fast() as conn:  # this caller waits and nothing else is ready: no window
        conn.execute(INSERT, {"uuid": "idle", "name": "idle"})
    await fastsql.committed()
    assert time.monotonic() - t0 < 0.05
    assert commits[0] == before + 1
    assert "idle" in committed(db)


async def test_a_before_commit_hook_writes_in_the_turns_transaction_once_per_key(
    db: Database,
) -> None:
    calls: list[str] = []

    def hook(conn: Any) -> None:
        calls.append("conn" if conn is not None else "lost")
        conn.execute(INSERT, {"uuid": f"h{len(calls)}", "name": f"hook{len(calls)}"})

    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "w", "name": "write"})
    assert db.before_commit("k", hook) and db.before_commit("k", hook)  # once per key
    assert calls == [] and committed(db) == []  # nothing runs before the commit
    await asyncio.sleep(0)
    assert calls == ["conn"]
    assert committed(db) == ["hook1", "write"]  # in the same commit as the turn's writes
    assert db.before_commit("k", hook)  # a new transaction: opened for the hook alone
    fastsql.settle()
    assert committed(db) == ["hook1", "hook2", "write"]


async def test_a_lost_turn_tells_its_hooks_and_the_task_that_set_them(db: Database) -> None:
    seen: list[Any] = []

    async def saver(go_on: asyncio.Event) -> str:
        assert db.before_commit("k", seen.append)
        await go_on.wait()
        try:
            fastsql.check_lost()
        except exc.OperationalError as err:
            return f"told: {err.orig}"
        return "not told"

    go_on = asyncio.Event()
    task = asyncio.create_task(saver(go_on))
    await asyncio.sleep(0)
    turn = next(t for t in fastsql._THREAD.turns if t.cache is db._fast)
    assert isinstance(commit_failing(turn), sqlite3.OperationalError)
    go_on.set()
    assert await task == "told: database or disk is full"
    assert seen == [turn.conn]  # it ran before the commit that failed; not told twice


async def test_no_before_commit_hook_without_a_turn_transaction(tmp_path: Path) -> None:
    memory = Database("sqlite://")  # no kept connection: a transaction per block
    try:
        assert not memory.before_commit("k", lambda _conn: None)
    finally:
        memory.dispose()
    file = Database(f"sqlite:///{tmp_path / 'thread.db'}")
    try:  # a thread without a loop writes its own transactions
        assert not await asyncio.to_thread(file.before_commit, "k", lambda _conn: None)
    finally:
        file.dispose()
