"""Text conditions ignore case, as zstack-cli's, and still use an index, on every engine.

For a database made by the migrations (``zmn upgrade``) and one made by ``create_all`` (the
test helpers, the embedded default), on SQLite, MariaDB and PostgreSQL: ``name=X``,
``name~=prefix%`` and ``name?=X,Y`` with other letter cases find the rows, and the database's
own EXPLAIN shows the folded-name index (zmn/core/nocase.py) serving them; ``uuid=X`` stays
exact and a primary-key lookup.

MariaDB and PostgreSQL run under CI=true (fail, not skip, when down).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.dbstate import ENGINES, fresh_database
from tests.support.querymodel import build_node
from zmn.api.querylang import parse_condition
from zmn.core.node import Node
from zmn.core.query import QuerySpec
from zmn.migrations.schema import upgrade
from zmn.services.zone.models import ZoneVO
from zmn.services.zone.service import ZoneService

ROWS = 3000  # enough rows that every planner prefers an index for a selective condition
INDEX = "ix_zone_name_folded"


@pytest.fixture(params=[(e, how) for e in ENGINES for how in ("migrated", "created")], ids=str)
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    engine, how = request.param
    for url in fresh_database(engine, tmp_path):
        if how == "migrated":
            upgrade(url)
        n = build_node(tmp_path / "home", [ZoneService], conf={"db.url": url})
        with n.db.tx() as s:
            s.add_all(
                ZoneVO(uuid=f"{i:032x}", name=f"Zone-{i:05d}" if i % 2 else f"zone-{i:05d}")
                for i in range(ROWS)
            )
        with n.db.engine.begin() as conn:  # fresh statistics for the planners
            analyze = {"sqlite": "ANALYZE", "postgresql": "ANALYZE zone"}
            conn.exec_driver_sql(analyze.get(engine, "ANALYZE TABLE zone"))
        yield n
        n.db.dispose()


def names(node: Node, *conds: str) -> list[str]:
    """The names found, sorted ignoring case (sortBy sorts by code point: Z before z)."""
    spec = QuerySpec("Zone", [parse_condition(c) for c in conds])
    with node.db.session() as s:
        found = [inv["name"] for inv in node.compiler.run(s, spec, None)["inventories"]]
    return sorted(found, key=str.lower)


def plan(node: Node, cond: str) -> str:
    """The engine's EXPLAIN of ``SELECT uuid FROM zone WHERE <cond>``, as one text, with the
    values bound the way the driver binds them when a query runs."""
    rt = node.resources.get("Zone")
    stmt = select(rt.column("uuid")).where(node.compiler.where(rt, parse_condition(cond)))
    engine = node.db.engine
    compiled = stmt.compile(dialect=engine.dialect)
    params: Any = compiled.params
    if engine.dialect.name == "sqlite":
        params = tuple(params[k] for k in compiled.positiontup or ())
        sql = "EXPLAIN QUERY PLAN " + compiled.string
    else:
        sql = "EXPLAIN " + compiled.string
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(sql, params).all()
    if engine.dialect.name == "mysql":  # one row per table: the key it uses, and how
        return " ".join(f"key={r._mapping['key']} type={r._mapping['type']}" for r in rows)
    return "\n".join(str(r[-1]) for r in rows)


def test_name_conditions_ignore_case_and_use_the_folded_index(node: Node) -> None:
    assert names(node, "name=ZONE-00011") == ["Zone-00011"]
    assert names(node, "name=zone-00012") == ["zone-00012"]
    assert names(node, "name?=ZONE-00011,Zone-00012") == ["Zone-00011", "zone-00012"]
    assert names(node, "name~=zONE-0001_") == [f"{'zZ'[i % 2]}one-{i:05d}" for i in range(10, 20)]
    assert names(node, "name~=ZONE-0299%") == [
        f"{'zZ'[i % 2]}one-{i:05d}" for i in range(2990, 3000)
    ]
    for cond in ("name=ZONE-00011", "name~=ZONE-0299%", "name?=ZONE-00011,zone-00012"):
        found = plan(node, cond)
        assert INDEX in found, f"{cond}: {found}"
        assert "SCAN zone\n" not in found + "\n" and "type=ALL" not in found, f"{cond}: {found}"


def test_uuid_conditions_stay_exact_and_use_the_primary_key(node: Node) -> None:
    assert names(node, f"uuid={11:032x}") == ["Zone-00011"]
    assert names(node, f"uuid={171:032X}") == []  # ...AB: UUIDs are lowercase, exact
    found = plan(node, f"uuid={11:032x}")
    assert INDEX not in found
    assert any(k in found for k in ("pk_zone", "PRIMARY", "sqlite_autoindex_zone")), found
