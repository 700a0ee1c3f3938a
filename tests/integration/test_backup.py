"""``zmn backup`` while the node runs and ``zmn restore`` into a fresh home, on SQLite and the
shared databases: every Query answer of the restored node equals the original's.

MariaDB and PostgreSQL run under CI=true (fail, not skip, when down).
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
import tarfile
from pathlib import Path

import pytest

from tests.support.dbstate import ENGINES, fill, fresh_database, query_answers, table_rows
from tests.support.inproc import Api, running_node
from zmn.api.errors import Conflict, InvalidArgument
from zmn.core.config import BootConfig
from zmn.migrations.schema import head_revision, upgrade
from zmn.ops.backup import backup, restore


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_online_backup_restores_into_a_fresh_home_with_every_answer(
    engine: str, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        src_url = stack.enter_context(
            contextlib.contextmanager(fresh_database)(engine, tmp_path, "src")
        )
        dst_url = stack.enter_context(
            contextlib.contextmanager(fresh_database)(engine, tmp_path, "dst")
        )
        upgrade(src_url)  # as zmn init leaves it
        archive = tmp_path / "b.tar.gz"
        home = tmp_path / "home"
        async with running_node(home, conf={"db.url": src_url, "log.level": "INFO"}) as (node, _s):
            api = Api(node)
            await fill(api)
            before = await query_answers(api)
            config = BootConfig.load(home, env={})
            # online: the node keeps serving while the backup is taken
            made, _ = await asyncio.gather(
                asyncio.to_thread(backup, config, archive), api("QueryZone")
            )
        assert (made.backend, made.schema) == (engine, head_revision())
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
            assert {"manifest.json", "zmn.conf"} <= names
            assert f"db.url={src_url}" in tar.extractfile("zmn.conf").read().decode()  # type: ignore[union-attr]

        fresh = tmp_path / "fresh"
        fresh.mkdir()
        (fresh / "zmn.conf").write_text(f"db.url={dst_url}\n")
        restored = restore(BootConfig.load(fresh, env={}), archive)
        assert restored == made
        assert same_rows(dst_url, src_url)
        async with running_node(fresh) as (node, _s):
            after = await query_answers(Api(node))
        assert after.keys() == before.keys()
        for name, answer in before.items():
            assert after[name] == answer, name

        # a database holding data is not replaced without force
        with pytest.raises(Conflict) as refused:
            restore(BootConfig.load(fresh, env={}), archive)
        assert refused.value.code == "NODE.RESTORE_NOT_EMPTY" and "--force" in refused.value.message
        restore(BootConfig.load(fresh, env={}), archive, force=True)
        assert same_rows(dst_url, src_url)


def same_rows(restored: str, original: str) -> bool:
    """Every row equal, but the node's own heartbeat row, which moved on after the backup."""
    node_row = {"management_node": {"heartbeat", "lastOpDate", "state", "pid", "endpoints"}}
    return table_rows(restored, node_row) == table_rows(original, node_row)


def test_restore_refuses_another_backend_and_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "zmn.conf").write_text("")
    config = BootConfig.load(home, env={})
    upgrade(config.db_url)
    archive = tmp_path / "b.tar.gz"
    backup(config, archive)
    other = tmp_path / "other"
    other.mkdir()
    (other / "zmn.conf").write_text("db.url=postgresql+psycopg://postgres@127.0.0.1:5432/x\n")
    with pytest.raises(InvalidArgument) as wrong:
        restore(BootConfig.load(other, env={}), archive)
    assert wrong.value.code == "NODE.BACKUP_BACKEND_MISMATCH"
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(InvalidArgument) as bad:
        restore(BootConfig.load(other, env={}), junk)
    assert bad.value.code == "NODE.BAD_BACKUP"
