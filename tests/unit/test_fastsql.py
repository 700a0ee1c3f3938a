"""The fast path (zmn/core/fastsql.py) gives what ``Connection.execute`` gives: the same rows
and types, the same Python-side defaults, the same transaction and the same exceptions.

Runs on every engine ZMN_TEST_DB selects (tests/conftest.py ENGINE_MODULES).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    delete,
    exc,
    insert,
    select,
    update,
)

from zmn.core.db import Database, Timestamp, utcnow

MD = MetaData()
T = Table(
    "fast_t",
    MD,
    Column("uuid", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("n", Integer, nullable=False, default=7),
    Column("flag", Boolean, nullable=False, default=False),
    Column("createDate", Timestamp, nullable=False, default=utcnow),
    Column("lastOpDate", Timestamp, nullable=False, default=utcnow, onupdate=utcnow),
)
INSERT = insert(T)
LOG = Table(  # an autoincrement key, as audit_log has
    "fast_log",
    MD,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("text", String(64), nullable=False),
)
BY_UUID = select(T).where(T.c.uuid == bindparam("uuid"))
BY_UUIDS = select(T.c.uuid).where(T.c.uuid.in_(bindparam("uuids", expanding=True)))
READY = select(T.c.uuid).where(T.c.name == "ready").order_by(T.c.uuid)  # a bound literal
RENAME = update(T).where(T.c.uuid == bindparam("_uuid")).values(name=bindparam("name"))
DROP = delete(T).where(T.c.uuid == bindparam("uuid"))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("fastsql") / "x.db"
    database = Database(f"sqlite:///{path}")
    MD.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _empty(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(T))
        conn.execute(delete(LOG))


def test_rows_and_types_match_core(db: Database) -> None:
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "a" * 32, "name": "one", "flag": True})
    with db.engine.begin() as conn:
        core = conn.execute(BY_UUID, {"uuid": "a" * 32}).one()
    with db.fast() as conn:
        fast = conn.execute(BY_UUID, {"uuid": "a" * 32}).one()
    assert tuple(fast) == tuple(core)
    assert fast._mapping == dict(core._mapping)
    assert fast.flag is True and fast.n == 7  # the column default, filled in by the fast path
    assert isinstance(fast.createDate, dt.datetime)


def test_timestamps_are_stored_as_core_stores_them(db: Database) -> None:
    moments = [dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(999, 12, 31, 23, 59, 59, 120)]
    for i, moment in enumerate(moments):
        with db.fast() as conn:
            conn.execute(
                INSERT, {"uuid": f"f{i}".ljust(32, "0"), "name": "x", "createDate": moment}
            )
        with db.engine.begin() as conn:
            conn.execute(
                INSERT, {"uuid": f"c{i}".ljust(32, "0"), "name": "x", "createDate": moment}
            )
    with db.engine.begin() as conn:
        as_text = cast(T.c.createDate, String(40))  # the stored value, not a datetime
        stored = dict(conn.execute(select(T.c.uuid, as_text)).all())
    assert len(stored) == 4 and all(stored.values())
    for i, moment in enumerate(moments):
        assert stored[f"f{i}".ljust(32, "0")] == stored[f"c{i}".ljust(32, "0")]
        with db.fast() as conn:
            assert (
                conn.execute(BY_UUID, {"uuid": f"f{i}".ljust(32, "0")}).one().createDate == moment
            )


def test_onupdate_and_rowcount(db: Database) -> None:
    with db.fast() as conn:
        conn.execute(
            INSERT, {"uuid": "b" * 32, "name": "old", "lastOpDate": dt.datetime(2020, 1, 1)}
        )
    with db.fast() as conn:
        assert conn.execute(RENAME, {"_uuid": "b" * 32, "name": "new"}).rowcount == 1
        assert conn.execute(RENAME, {"_uuid": "c" * 32, "name": "x"}).rowcount == 0
        row = conn.execute(BY_UUID, {"uuid": "b" * 32}).one()
    assert row.name == "new"
    assert row.lastOpDate > dt.datetime(2020, 1, 1)  # onupdate ran


def test_executemany_expanding_and_literals(db: Database) -> None:
    with db.fast() as conn:
        conn.execute(INSERT, [{"uuid": f"{i:032x}", "name": "ready"} for i in range(5)])
        conn.execute(INSERT, {"uuid": "f" * 32, "name": "other"})
        assert len(conn.execute(READY).all()) == 5
        picked = conn.scalars(BY_UUIDS, {"uuids": [f"{1:032x}", f"{3:032x}", "f" * 32]}).all()
        assert sorted(picked) == [f"{1:032x}", f"{3:032x}", "f" * 32]
        assert conn.scalars(BY_UUIDS, {"uuids": []}).all() == []
        assert conn.scalar(BY_UUIDS, {"uuids": ["nope"]}) is None


def test_a_failed_block_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError), db.fast() as conn:
        conn.execute(INSERT, {"uuid": "d" * 32, "name": "half"})
        raise RuntimeError("step failed")
    with db.engine.begin() as conn:
        assert conn.execute(BY_UUID, {"uuid": "d" * 32}).first() is None


def test_driver_errors_are_sqlalchemy_errors(db: Database) -> None:
    with db.fast() as conn:
        conn.execute(INSERT, {"uuid": "e" * 32, "name": "first"})
    with pytest.raises(exc.IntegrityError), db.fast() as conn:
        conn.execute(DROP, {"uuid": "nothing"})
        conn.execute(INSERT, {"uuid": "e" * 32, "name": "twin"})
    with db.engine.begin() as conn:
        assert conn.execute(BY_UUID, {"uuid": "e" * 32}).one().name == "first"


def test_a_missing_parameter_is_an_error(db: Database) -> None:
    with pytest.raises(exc.ArgumentError, match="uuid"), db.fast() as conn:
        conn.execute(BY_UUID, {})


def test_returning_is_refused(db: Database) -> None:
    with pytest.raises(TypeError, match="RETURNING"), db.fast() as conn:
        conn.execute(RENAME.returning(T.c.uuid), {"_uuid": "a" * 32, "name": "x"})


def test_an_insert_into_an_autoincrement_table_needs_no_returning(db: Database) -> None:
    """PostgreSQL compiles such an insert with an implicit RETURNING of the key; the fast
    path returns no rows, so it must not ask for one (it refused the audit row before)."""
    with db.fast() as conn:
        conn.execute(insert(LOG), {"text": "one"})
        conn.execute(insert(LOG), [{"text": "two"}, {"text": "three"}])
    with db.engine.begin() as conn:
        rows = conn.execute(select(LOG.c.id, LOG.c.text).order_by(LOG.c.id)).all()
    assert [r.text for r in rows] == ["one", "two", "three"]
    assert len({r.id for r in rows}) == 3


def test_an_expanding_statement_is_planned_once_per_list_length(db: Database) -> None:
    """IN lists with a literal and a bind processor beside them: the SQL and the values in
    their order are planned once per list length and give what SQLAlchemy's own expansion
    gives, for every length, the empty list too."""
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, 678901)
    when = select(T.c.uuid).where(
        T.c.uuid.in_(bindparam("uuids", expanding=True)),
        T.c.name == "ready",
        T.c.createDate.in_(bindparam("stamps", expanding=True)),
    )
    rows = [{"uuid": f"{i:032x}", "name": "ready", "createDate": stamp} for i in range(6)]
    rows[5]["name"] = "other"
    with db.fast() as conn:
        conn.execute(INSERT, rows)
    uuids = [r["uuid"] for r in rows]
    fast = db._fast.get(when, {"uuids": [], "stamps": []}, False)
    for n in (3, 0, 6, 3, 1):
        args = {"uuids": uuids[:n], "stamps": [stamp, None]}
        with db.fast() as conn:
            got = sorted(conn.scalars(when, args).all())
        with db.engine.connect() as core:
            want = sorted(core.scalars(when, args).all())
        assert got == want == uuids[: min(n, 5)]
    if db.backend == "sqlite":  # positional: planned
        assert sorted(fast._plans) == [(2, 0), (2, 1), (2, 3), (2, 6)]  # (stamps, uuids)
        assert all(plan is not None for plan in fast._plans.values())
    # a bound value given in one call and left to the statement's own in the next (each set
    # of keys is a statement shape of its own, with its own plans)
    named = select(T.c.uuid).where(
        T.c.uuid.in_(bindparam("uuids", expanding=True)), T.c.name == bindparam("n", "ready")
    )
    with db.fast() as conn:
        assert sorted(conn.scalars(named, {"uuids": uuids, "n": "other"}).all()) == [uuids[5]]
        assert sorted(conn.scalars(named, {"uuids": uuids}).all()) == uuids[:5]
        assert sorted(conn.scalars(named, {"uuids": uuids, "n": "other"}).all()) == [uuids[5]]
