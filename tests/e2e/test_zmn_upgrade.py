"""``zmn start`` refuses a database of another schema, naming the command; ``zmn upgrade``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from tests.support.proc import ZmnProcess
from zmn.migrations.schema import alembic_config, head_revision


@pytest.fixture
def zmn(tmp_path: Path) -> Iterator[ZmnProcess]:
    proc = ZmnProcess(tmp_path / "home")
    yield proc
    proc.stop_quietly()


def test_start_names_zmn_upgrade_and_upgrade_brings_the_database_current(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    url = f"sqlite:///{zmn.home / 'zmn.db'}"
    command.downgrade(alembic_config(url), "0001")  # the previous release's schema
    refused = zmn.zmn("start")
    assert refused.code == 1 and "run: zmn upgrade" in refused.err, refused.err
    assert "revision 0001" in refused.err
    pending = zmn.zmn("upgrade", "--check")
    assert pending.code == 1 and f"database 0001, code {head_revision()}: older" in pending.out
    done = zmn.zmn("upgrade")
    assert done.code == 0 and f"from 0001 to {head_revision()}" in done.out, done.err
    assert zmn.zmn("upgrade", "--check").code == 0
    again = zmn.zmn("upgrade")
    assert again.code == 0 and "is current" in again.out
    started = zmn.zmn("start")
    assert started.code == 0, started.err


def test_start_refuses_a_database_from_a_newer_release(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    engine = create_engine(f"sqlite:///{zmn.home / 'zmn.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_later'"))
    engine.dispose()
    for argv in (("start",), ("start", "--foreground"), ("upgrade",)):
        refused = zmn.zmn(*argv, timeout=60)
        assert refused.code != 0, argv
        assert "pip install --upgrade zstack-terminal" in refused.err, (argv, refused.err)
