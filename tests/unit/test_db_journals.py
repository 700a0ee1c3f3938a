"""SQLite's statement and savepoint journals stay in memory on the node's connections.

Every block of a loop turn's shared transaction is a savepoint (zmn/core/fastsql.py); a
savepoint's sub-journal spilled into a temporary file past 64 KiB, which cost about a hundred
``pwrite`` calls per VM create. The test fails on a connection without ``temp_store=MEMORY``.
"""

from __future__ import annotations

import os
from pathlib import Path

from zmn.core.db import make_engine


def _temporary_files() -> list[str]:
    """SQLite's temporary files this process holds open (named etilqs_*, unlinked at once)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if "etilqs_" in target:
            found.append(target)
    return found


def test_a_savepoint_that_changes_many_pages_writes_no_temporary_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        assert dbapi.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
        dbapi.isolation_level = None  # explicit BEGIN/SAVEPOINT, as the fast path runs them
        dbapi.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        dbapi.execute("CREATE INDEX ix_t_v ON t (v)")
        dbapi.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 200,) for _ in range(2000)])
        before = _temporary_files()
        dbapi.execute("BEGIN IMMEDIATE")
        dbapi.execute("SAVEPOINT fast1")
        # about 400 KiB of table and index pages changed inside the savepoint
        dbapi.execute("UPDATE t SET v = 'y' || v")
        during = _temporary_files()
        dbapi.execute("RELEASE fast1")
        dbapi.execute("COMMIT")
        assert dbapi.execute("SELECT count(*) FROM t WHERE v LIKE 'y%'").fetchone()[0] == 2000
    finally:
        raw.close()
        engine.dispose()
    assert during == before, f"sub-journal spilled into {during}"
