"""Database access: the declarative base, common columns and the engine for every backend.

The management node runs every handler on one asyncio loop and keeps each transaction free of
awaits, so on one node a transaction is never interleaved with another: capacity and IP
allocation need no extra locking there. Multi-node safety comes from conditional updates.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, String, Text, create_engine, event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateTable

from zmn.api.ids import new_uuid as new_uuid  # re-exported: the node's UUIDs
from zmn.core import nocase
from zmn.core.fastsql import FastConnection, StatementCache

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Microsecond precision everywhere (MariaDB's DATETIME drops fractions unless told).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base of every table of every service."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# every indexed name column gets an index on its lower-cased value (zmn/core/nocase.py)
event.listen(Base.metadata, "after_create", nocase.create_folded_indexes)


# Text compares and sorts by code point on every engine: SQLite and PostgreSQL (for our
# identifiers) do; MySQL/MariaDB's default collations ignore case and trailing spaces, so every
# table made there gets a binary, no-pad collation. Queries, keyset cursors and unique names
# then mean the same everywhere.
@compiles(CreateTable, "mysql")
@compiles(CreateTable, "mariadb")
def _create_table_binary_collation(create: CreateTable, compiler: Any, **kw: Any) -> str:
    text = str(compiler.visit_create_table(create, **kw)).rstrip()
    is_mariadb = getattr(compiler.dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if is_mariadb else "utf8mb4_0900_bin"
    return f"{text} DEFAULT CHARSET=utf8mb4 COLLATE={collation}\n\n"


T = TypeVar("T")
IN_LIST = 500  # values per IN (...) list: far under every backend's bound-parameter limit


def in_slices(values: Sequence[T], size: int = IN_LIST) -> Iterator[Sequence[T]]:
    """``values`` in consecutive slices of at most ``size``, one ``IN (...)`` list each: a
    statement stays under the backend's bound-parameter limit however many values come."""
    for at in range(0, len(values), size):
        yield values[at : at + size]


_EPOCH = dt.datetime(1970, 1, 1)


def utcnow() -> dt.datetime:
    """Naive UTC, the same on every backend.

    The epoch plus ``time.time()``: the value of ``datetime.now(UTC)`` without its time-zone
    conversion and ``replace``, for half the cost (a create reads the clock for most rows it
    writes). ``utcfromtimestamp`` would be cheaper still but is deprecated since 3.12."""
    return _EPOCH + dt.timedelta(0, time.time())


class ResourceMixin:
    """Columns every resource has."""

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine tuned for the backend named by the URL."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            # the most recently used connection first: SQLite keeps a page cache per connection
            # and drops it when another connection wrote since, so rotating through the pool
            # (FIFO) re-read the B-tree pages in every transaction
            kwargs["pool_use_lifo"] = True
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["pool_size"] = 10
        kwargs["max_overflow"] = 20
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Statement and savepoint journals in memory: every block of a loop turn's shared
    # transaction is a savepoint (zmn/core/fastsql.py), and SQLite keeps the original of
    # each page a savepoint changes in a sub-journal, a temporary file past its first 64 KiB
    # (about 120 pwrite calls a VM create, a tenth of the node's CPU). In memory the sub-journal
    # is emptied when the last savepoint is released. Temporary tables and transient
    # indices of a query live in memory too, for that query only.
    cur.execute("PRAGMA temp_store=MEMORY")
    # LIKE behaves the same as on PostgreSQL (case-sensitive, so that on text folded by
    # lower() it is case-insensitive exactly as there; see zmn/core/nocase.py).
    cur.execute("PRAGMA case_sensitive_like=ON")
    cur.close()


class Database:
    """The engine and session factory of one node."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, future=True)
        sqlite_file = self.engine.dialect.name == "sqlite" and self.engine.url.database not in (
            None,
            "",
            ":memory:",
        )
        self._fast = StatementCache(self.engine, keep=sqlite_file)
        if self._fast.keep:
            event.listen(self.engine, "before_cursor_execute", self._fast.before_sqlalchemy)
            for ended in ("commit", "rollback"):
                event.listen(self.engine, ended, self._fast.after_sqlalchemy_transaction)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self._sessions()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def fast(self) -> AbstractContextManager[FastConnection]:
        """A transaction for hot paths: cached Core statements run below SQLAlchemy's
        per-statement machinery (:mod:`zmn.core.fastsql`); committed on success."""
        return self._fast.begin()

    def before_commit(self, key: Any, hook: Callable[[FastConnection | None], None]) -> bool:
        """Writes made right before the loop turn's transaction commits
        (:meth:`~zmn.core.fastsql.StatementCache.before_commit`); False where there is none."""
        return self._fast.before_commit(key, hook)

    def create_all(self) -> None:
        """Create every table (tests and the embedded default; production runs migrations)."""
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self._fast.close()
        self.engine.dispose()
