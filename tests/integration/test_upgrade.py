"""Upgrading a database of the previous release (schema 0001) to head, on every engine.

The test fills a database through the API of a node (at head), then takes its schema back to
``0001`` with Alembic's downgrades: a simulator cloud with VMs, volumes, snapshots, tags, global config changes and a
``kvm_host`` row written as the previous release wrote it. Then the node stops, ``zmn start``'s
check refuses the database naming ``zmn upgrade``, the upgrade runs through every later revision, and
every row of every table and every ``Query*`` answer is compared with what was there before.
Two nodes upgrading at once: one migrates, the other waits for the lock and finds it current.

MariaDB and PostgreSQL run under CI=true (fail, not skip, when down).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from tests.support.dbstate import ENGINES, fill, fresh_database, query_answers, table_rows
from tests.support.inproc import Api, running_node
from zmn.api.errors import Unavailable
from zmn.migrations.schema import (
    alembic_config,
    check_schema_version,
    current_revision,
    head_revision,
    schema_status,
    upgrade,
)


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path)


def kvm_row_as_0001_wrote_it(url: str, host_uuid: str) -> None:
    engine = create_engine(url)
    now = dt.datetime(2026, 11, 30, 12, 0, 0)
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO kvm_host (uuid, username, "sshPort", "agentPort", "agentSecret",'
                ' "agentVersion", "createDate", "lastOpDate") VALUES (:u, :n, 22, 7070, :s,'
                " :v, :d, :d)".replace('"', "`" if engine.dialect.name == "mysql" else '"')
            ),
            {"u": host_uuid, "n": "root", "s": "ab" * 32, "v": "0.1.0+abc", "d": now},
        )
    engine.dispose()


async def test_a_0001_database_upgrades_with_every_row_and_answer_intact(
    db_url: str, tmp_path: Path
) -> None:
    # This code fills the cloud at head, then Alembic takes the schema back to 0001 (every later
    # revision's downgrade runs), so the data is what a 0001 node left in a 0001 schema however
    # many revisions come after it.
    command.upgrade(alembic_config(db_url), "head")
    async with running_node(tmp_path / "old", conf={"db.url": db_url}) as (node, _server):
        api = Api(node)
        await fill(api)
        before_answers = await query_answers(api)
        host = (await api("QueryHost", conditions=["name=h1"]))["inventories"][0]["uuid"]
    command.downgrade(alembic_config(db_url), "0001")
    assert current_revision(db_url) == "0001"
    kvm_row_as_0001_wrote_it(db_url, host)
    before_rows = table_rows(db_url)
    assert "deployDate" not in before_rows["kvm_host"][0]
    assert sum(len(r) for r in before_rows.values()) > 100

    with pytest.raises(Unavailable) as refused:
        check_schema_version(db_url)
    assert refused.value.code == "NODE.SCHEMA_OUTDATED"
    assert "run: zmn upgrade" in refused.value.message

    assert upgrade(db_url) == ("0001", head_revision())
    assert schema_status(db_url)[0] == "current"
    check_schema_version(db_url)  # start accepts it now
    after_rows = table_rows(db_url)
    before_rows.pop("alembic_version")
    assert after_rows.pop("alembic_version") == [{"version_num": head_revision()}]
    added = sorted(after_rows.keys() - before_rows.keys())  # tables later revisions create
    assert {t: after_rows.pop(t) for t in added} == {t: [] for t in added}
    # columns later revisions add (kvm_host.deployDate, vm_nic.leaseDate...) are empty on
    # every old row; the old columns hold exactly what they held
    new_values: set[object] = set()
    for table, rows in after_rows.items():
        old_columns = set(before_rows[table][0]) if before_rows[table] else set()
        for row in rows:
            new_values.update(v for k, v in row.items() if old_columns and k not in old_columns)
            for k in [k for k in row if old_columns and k not in old_columns]:
                del row[k]
    assert new_values <= {None}
    assert after_rows == before_rows
    assert [r["deployDate"] for r in table_rows(db_url)["kvm_host"]] == [None]

    async with running_node(tmp_path / "new", conf={"db.url": db_url}) as (node, _server):
        after_answers = await query_answers(Api(node))
    assert after_answers.keys() == before_answers.keys()
    for name, answer in before_answers.items():
        assert after_answers[name] == answer, name


def test_nodes_upgrading_at_once_take_turns(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0001")
    results: list[tuple[str | None, str]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(upgrade(db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    head = head_revision()
    assert sorted(str(before) for before, _ in results) == sorted(["0001", head, head])
    assert current_revision(db_url) == head


def test_a_database_newer_than_the_code_is_refused_not_downgraded(db_url: str) -> None:
    upgrade(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    assert schema_status(db_url) == ("newer", "9999_future", head_revision())
    for attempt in (check_schema_version, upgrade):
        with pytest.raises(Unavailable) as refused:
            attempt(db_url)
        assert refused.value.code == "NODE.SCHEMA_TOO_NEW"
        assert "pip install --upgrade zstack-terminal" in refused.value.message
    assert current_revision(db_url) == "9999_future"
