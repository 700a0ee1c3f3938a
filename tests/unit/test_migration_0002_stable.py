"""0002_stable: a database holding data at 0001 upgrades, its open sessions keep working."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from zmn.migrations.schema import alembic_config, current_revision, head_revision, upgrade
from zmn.services.identity.sessions import digest

TOKEN = "0123456789abcdef0123456789abcdef"


def test_sessions_of_0001_are_rekeyed_by_digest_and_the_rest_survives(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    assert current_revision(url) == "0001"
    now = dt.datetime(2026, 12, 1, 12, 0, 0)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO zone (uuid, name, state, createDate, lastOpDate)"
                " VALUES ('z' || hex(randomblob(15)), 'kept', 'Enabled', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                'INSERT INTO session (uuid, "accountUuid", "userUuid", "expiredDate",'
                ' "createDate", "lastOpDate") VALUES (:u, :a, NULL, :e, :now, :now)'
            ),
            {"u": TOKEN, "a": "a" * 32, "e": now + dt.timedelta(hours=2), "now": now},
        )

    before, after = upgrade(url)

    assert (before, after) == ("0001", head_revision())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM zone")).scalars().all() == ["kept"]
        rows = conn.execute(text('SELECT uuid, "accountUuid" FROM session')).all()
    engine.dispose()
    # the client's token (the old key) finds its session through the digest
    assert [tuple(r) for r in rows] == [(digest(TOKEN), "a" * 32)]
