"""What one ``CreateVmInstance`` costs the database, pinned so that it does not grow unseen:
the statements it runs, the transactions it opens, and how many of its statements still go
through SQLAlchemy's per-statement machinery rather than the fast path (zmn/core/fastsql.py).

Counted one create at a time on an in-process node (flow-record writes of concurrent creates
share transactions; alone, each is its own). Lower the limits when a change removes work.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import build_cloud
from zmn.core import fastsql

STATEMENTS = 42  # 40 seen: the reference check no longer looks up what plan_create reads
TRANSACTIONS = 30  # db.fast() blocks and SQLAlchemy transactions
COMMITS = 25  # alone: a create spans many loop turns (each await of a bus call is one)
CONCURRENT_COMMITS = 4  # per create, 20 creates in flight: their blocks share turns (1.25 seen)
THROUGH_SQLALCHEMY = 0  # the job and audit rows ride the flow records' group commit

pytestmark = pytest.mark.asyncio


@contextmanager
def counting(engine: Any) -> Iterator[Counter[str]]:
    """Count statements and transactions of both paths while the block runs."""
    seen: Counter[str] = Counter()
    real_execute = fastsql.FastConnection.execute
    real_begin = fastsql.StatementCache.begin

    def execute(self: Any, statement: Any, params: Any = None) -> Any:
        seen["statements"] += 1
        return real_execute(self, statement, params)

    def begin(self: Any) -> Any:
        seen["transactions"] += 1
        return real_begin(self)

    here = threading.get_ident()  # the node's loop: not the membership beat's own thread

    def core_statement(*_args: Any) -> None:
        if threading.get_ident() == here:
            seen["statements"] += 1
            seen["sqlalchemy"] += 1

    def core_transaction(*_args: Any) -> None:
        if threading.get_ident() == here:
            seen["transactions"] += 1
            seen["commits"] += 1

    real_commit = fastsql.TurnTransaction.commit

    def turn_commit(self: Any) -> Any:
        if self.open and not self.depth:
            seen["commits"] += 1
        return real_commit(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastsql.FastConnection, "execute", execute)
        mp.setattr(fastsql.StatementCache, "begin", begin)
        mp.setattr(fastsql.TurnTransaction, "commit", turn_commit)
        # a write of the membership beat's thread makes the loop commit block by block for a
        # while (fastsql.WRITER_WINDOW, tested in tests/unit/test_fastsql_turns.py); on a
        # loaded machine a beat fell inside the counted creates (16 commits a create)
        mp.setattr(fastsql, "WRITER_WINDOW", 0.0)
        event.listen(engine, "before_cursor_execute", core_statement)
        event.listen(engine, "begin", core_transaction)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", core_statement)
            event.remove(engine, "begin", core_transaction)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_node(tmp_path / "home") as (node, _server):
        yield Api(node)


async def test_one_create_stays_within_its_statements(api: Api) -> None:
    cloud = await build_cloud(api)
    await cloud.vm("warm-up")  # statements compiled, caches filled
    creates = 5
    with counting(api.node.db.engine) as seen:
        for i in range(creates):
            vm = await cloud.vm(f"counted-{i}")
            assert vm["state"] == "Running"
    per_create = {k: v / creates for k, v in seen.items()}
    assert per_create["statements"] >= 20, per_create  # the counter sees both paths
    assert per_create["statements"] <= STATEMENTS, per_create
    assert per_create["transactions"] <= TRANSACTIONS, per_create
    assert per_create["commits"] <= COMMITS, per_create
    assert per_create.get("sqlalchemy", 0) <= THROUGH_SQLALCHEMY, per_create


async def test_concurrent_creates_share_their_commits(api: Api) -> None:
    cloud = await build_cloud(api)
    await cloud.vm("warm-up")
    creates = 20
    with counting(api.node.db.engine) as seen:
        vms = await asyncio.gather(*(cloud.vm(f"together-{i}") for i in range(creates)))
    assert [vm["state"] for vm in vms] == ["Running"] * creates
    per_create = {k: v / creates for k, v in seen.items()}
    print(per_create)
    assert per_create["commits"] <= CONCURRENT_COMMITS, per_create
