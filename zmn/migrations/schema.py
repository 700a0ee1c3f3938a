"""Schema migrations with Alembic, driven from code (no alembic.ini needed by operators).

``upgrade(url)`` brings any backend to the newest revision; it creates the schema on an empty
database and does nothing on one that is current, so a second node's ``zmn init`` joins a
shared database without re-creating it. It runs under :func:`migration_lock`, so when several
nodes of a cluster upgrade at once one migrates and the others wait, then find it current.

:func:`check_schema_version` is what ``zmn start`` asks: a database older than the code names
``zmn upgrade``, one newer (written by a later release) names upgrading the software.

Migrations are written online-safe: a revision only adds (nullable or defaulted columns,
tables, indexes), so nodes of the previous release keep working while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from zmn.api.errors import Unavailable

HERE = Path(__file__).resolve().parent
LOCK_NAME = "zmn.schema-migration"
LOCK_TIMEOUT = 600  # seconds a node waits for another node's migration


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
    return head


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_status(url: str) -> tuple[str, str | None, str]:
    """(status, database revision, code's head): status is empty, current, older or newer."""
    current, head = current_revision(url), head_revision()
    if current is None:
        return "empty", None, head
    if current == head:
        return "current", current, head
    known = {rev.revision for rev in _script().walk_revisions()}
    return ("older" if current in known else "newer"), current, head


def check_schema_version(url: str) -> None:
    """Refuse a database this code cannot serve, naming the command that fixes it."""
    from zmn import __version__

    status, current, head = schema_status(url)
    where = make_url(url).render_as_string(hide_password=True).split("@")[-1]
    if status == "empty":
        raise Unavailable(
            f"the database at {where} is not initialised; run: zmn init",
            code="NODE.NOT_INITIALISED",
            retryable=False,
        )
    if status == "older":
        raise Unavailable(
            f"the database schema is at revision {current}, older than this zmn {__version__}"
            f" needs ({head}); back it up (zmn backup FILE), then run: zmn upgrade",
            code="NODE.SCHEMA_OUTDATED",
            retryable=False,
        )
    if status == "newer":
        raise Unavailable(
            f"the database schema is at revision {current}, which this zmn {__version__} does"
            f" not know (it knows up to {head}): a newer release migrated it; install that"
            " release on this node (pip install --upgrade zstack-terminal), then run: zmn start",
            code="NODE.SCHEMA_TOO_NEW",
            retryable=False,
        )


@contextlib.contextmanager
def migration_lock(url: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """One migrating node at a time: an advisory lock of the database server (MariaDB
    ``GET_LOCK``, PostgreSQL ``pg_advisory_lock``), a lock file beside a SQLite file."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            yield
            return
        with open(f"{db}.migrate-lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                key = int.from_bytes(
                    hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True
                )
                conn.execute(
                    text("SELECT set_config('lock_timeout', :ms, false)"),
                    {"ms": f"{int(timeout * 1000)}"},
                )
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                return
            got = conn.execute(
                text("SELECT GET_LOCK(:n, :t)"), {"n": LOCK_NAME, "t": int(timeout)}
            ).scalar()
            if got != 1:
                raise Unavailable(
                    f"another node has been migrating the database for {timeout:g}s",
                    code="NODE.MIGRATION_LOCKED",
                )
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": LOCK_NAME})
    finally:
        engine.dispose()


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrate to head under the migration lock; returns (revision before, revision after).

    A database newer than this code is refused (downgrading it would lose data)."""
    with migration_lock(url):
        status, before, head = schema_status(url)
        if status == "newer":
            check_schema_version(url)
        if status != "current":
            command.upgrade(alembic_config(url), "head")
    return before, head
