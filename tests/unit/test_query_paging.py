"""Contract: keyset paging. Following ``next`` with ``after`` returns every matching row exactly
once and in the order one unlimited query returns them, for any sortBy (duplicate values and
NULLs included), both directions, with conditions through joins; the last page has no ``next``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.inproc import Api, running_node
from tests.support.querymodel import (
    TYPES,
    DataSet,
    PyEvaluator,
    QueryModelService,
    Row,
    build_node,
    load,
    sort_rows,
)
from tests.unit.test_query_property import hypothesis_pick, make_condition, make_data
from zmn.api.errors import InvalidArgument
from zmn.api.querylang import Condition
from zmn.core.node import Node
from zmn.core.query import QuerySpec
from zmn.services.query.service import QueryService
from zmn.services.zone.models import ZoneVO
from zmn.services.zone.service import ZoneService

SETTINGS = settings(
    max_examples=int(os.environ.get("QUERY_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SORT_KEYS = [None, "name", "num", "label", "flag", "kind", "uuid"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> Iterator[Node]:
    # db_engine: one node per engine when ZMN_TEST_DB selects several (tests/conftest.py)
    n = build_node(tmp_path_factory.mktemp("qpage"), [QueryModelService], memory=True)
    yield n
    n.db.dispose()


def run(node: Node, spec: QuerySpec) -> dict[str, Any]:
    with node.db.session() as session:
        return node.compiler.run(session, spec, None)


def page_all(node: Node, spec: QuerySpec) -> list[str]:
    """Every row by following ``next``; checks each page's size and where ``next`` appears."""
    seen: list[str] = []
    after = None
    for _ in range(1000):
        spec.after = after
        reply = run(node, spec)
        rows = [inv["uuid"] for inv in reply["inventories"]]
        seen.extend(rows)
        after = reply.get("next")
        if after is None:
            assert len(rows) <= spec.limit
            return seen
        assert len(rows) == spec.limit, "a page with a next is a full page"
    raise AssertionError("paging did not end")


def with_duplicates(data: DataSet, pick: Any) -> DataSet:
    """Many equal sort values and NULLs: copy values between rows of the same type."""
    for rows in data.rows.values():
        for row in rows:
            if rows and pick([True, False]):
                other = pick(rows)
                row.name, row.num, row.label = other.name, other.num, other.label
    return data


@SETTINGS
@given(st_data=st.data())
def test_paging_with_after_returns_every_row_once_in_order(
    node: Node, st_data: st.DataObject
) -> None:
    pick = hypothesis_pick(st_data.draw)
    data = with_duplicates(make_data(pick), pick)
    # more rows than make_data gives, so that pages are many: clones with the same values
    extra = []
    for type_name, rows in data.rows.items():
        for i, row in enumerate(list(rows)[:3]):
            clone = Row(
                f"e{row.uuid[1:-2]}{i:02x}", row.name, row.num, row.label, row.flag, row.kind
            )
            clone.ref = row.ref
            extra.append((type_name, clone))
    for type_name, clone in extra:
        data.rows[type_name].append(clone)
    with node.db.tx() as s:
        load(s, data)
    evaluator = PyEvaluator(data)
    root = pick(TYPES)
    conds: list[Condition] = [
        make_condition(pick, root, data) for _ in range(pick([0, 0, 1, 1, 2]))
    ]
    sort_by = pick(SORT_KEYS)
    direction = pick(["asc", "desc"])
    limit = pick([1, 2, 3, 5])
    expected = [r.uuid for r in sort_rows(evaluator.select(root, conds), sort_by, direction)]
    whole = run(node, QuerySpec(root, list(conds), sortBy=sort_by, sortDirection=direction))
    assert [inv["uuid"] for inv in whole["inventories"]] == expected
    assert "next" not in whole  # not cut by the limit
    spec = QuerySpec(root, list(conds), limit=limit, sortBy=sort_by, sortDirection=direction)
    assert page_all(node, spec) == expected, ([str(c) for c in conds], sort_by, direction)


def test_paging_many_seeded_data_sets(node: Node) -> None:
    """The same property over uniform random data sets (more variety per second)."""
    rng = random.Random(4)
    for _ in range(40):
        data = with_duplicates(make_data(rng.choice), rng.choice)
        with node.db.tx() as s:
            load(s, data)
            evaluator = PyEvaluator(data)
        for _ in range(10):
            root = rng.choice(TYPES)
            conds = [make_condition(rng.choice, root, data) for _ in range(rng.choice([0, 1]))]
            sort_by, direction = rng.choice(SORT_KEYS), rng.choice(["asc", "desc"])
            rows = sort_rows(evaluator.select(root, conds), sort_by, direction)
            spec = QuerySpec(
                root, conds, limit=rng.choice([1, 2, 4]), sortBy=sort_by, sortDirection=direction
            )
            assert page_all(node, spec) == [r.uuid for r in rows]


def _data(n: int) -> DataSet:
    data = DataSet()
    for i in range(n):
        data.rows["Qd"].append(
            Row(f"d{i:031x}", f"n{i % 3}", None if i % 4 == 0 else i % 5, None, i % 2 == 0, "red")
        )
    return data


def test_next_only_when_cut_and_limit_edges(node: Node) -> None:
    with node.db.tx() as s:
        load(s, _data(6))
    full = run(node, QuerySpec("Qd", limit=6))
    assert len(full["inventories"]) == 6 and "next" not in full  # exactly the limit: last page
    first = run(node, QuerySpec("Qd", limit=4))
    assert len(first["inventories"]) == 4 and isinstance(first["next"], str)
    rest = run(node, QuerySpec("Qd", limit=4, after=first["next"]))
    assert [i["uuid"] for i in rest["inventories"]] == [f"d{i:031x}" for i in (4, 5)]
    assert "next" not in rest
    assert "next" not in run(node, QuerySpec("Qd", limit=0))
    assert run(node, QuerySpec("Qd", count=True)) == {"total": 6}  # counts carry no cursor
    # fields may leave out the key: the cursor still comes from the row
    some = run(node, QuerySpec("Qd", limit=2, fields=["name"], sortBy="num"))
    again = run(node, QuerySpec("Qd", limit=10, fields=["name"], sortBy="num", after=some["next"]))
    assert len(again["inventories"]) == 4
    # start stays (OFFSET) and pages the same rows
    by_offset = run(node, QuerySpec("Qd", limit=2, start=2))
    by_cursor = run(
        node, QuerySpec("Qd", limit=2, after=run(node, QuerySpec("Qd", limit=2))["next"])
    )
    assert by_offset["inventories"] == by_cursor["inventories"]


@pytest.mark.parametrize(
    ("options", "cursor_of"),
    [
        ({"sortBy": "num"}, {}),  # a cursor of the default order used with sortBy
        ({"sortBy": "num", "sortDirection": "desc"}, {"sortBy": "num"}),
        ({}, {"sortBy": "name"}),
    ],
)
def test_cursor_of_another_order_is_refused(
    node: Node, options: dict[str, Any], cursor_of: dict[str, Any]
) -> None:
    with node.db.tx() as s:
        load(s, _data(5))
    cursor = run(node, QuerySpec("Qd", limit=1, **cursor_of))["next"]
    with pytest.raises(InvalidArgument) as info:
        run(node, QuerySpec("Qd", after=cursor, **options))
    assert info.value.code == "QUERY.BAD_CURSOR" and info.value.field == "after"


@pytest.mark.parametrize("cursor", ["x", "!!!", "W10", "WzEsbnVsbCwiYXNjIixudWxsXQ", "e30"])
def test_garbage_cursor_is_an_error(node: Node, cursor: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        run(node, QuerySpec("Qd", after=cursor))
    assert info.value.code == "QUERY.BAD_CURSOR"


def test_after_and_start_together_is_an_error(node: Node) -> None:
    with node.db.tx() as s:
        load(s, _data(3))
    cursor = run(node, QuerySpec("Qd", limit=1))["next"]
    with pytest.raises(InvalidArgument) as info:
        run(node, QuerySpec("Qd", after=cursor, start=1))
    assert info.value.field == "after"


def test_cursor_values_are_bound(node: Node) -> None:
    """A cursor's values reach SQL as parameters, like condition values."""
    data = _data(3)
    data.rows["Qd"].append(Row("e" * 32, "x' OR '1'='1", 1, None, False, "red"))
    with node.db.tx() as s:
        load(s, data)
    page = run(node, QuerySpec("Qd", limit=3, sortBy="name"))
    rest = run(node, QuerySpec("Qd", limit=3, sortBy="name", after=page["next"]))
    assert [i["name"] for i in rest["inventories"]] == ["x' OR '1'='1"]


async def test_api_pages_timestamps_with_after(tmp_path: Path) -> None:
    """Through the API, sorted by a timestamp with equal and sub-millisecond-apart values."""
    async with running_node(tmp_path / "home", services=[QueryService, ZoneService]) as (n, _s):
        base = dt.datetime(2026, 1, 2, 3, 4, 5, 123000)
        stamps = [
            base,
            base,
            base + dt.timedelta(microseconds=10),
            base,
            base - dt.timedelta(days=1),
        ]
        with n.db.tx() as s:
            for i, when in enumerate(stamps):
                zone = ZoneVO(uuid=f"{i:032x}", name=f"z{i}")
                s.add(zone)
                s.flush()
                zone.createDate = when
        api = Api(n)
        for direction in ("asc", "desc"):
            whole = await api("QueryZone", sortBy="createDate", sortDirection=direction)
            want = [z["uuid"] for z in whole["inventories"]]
            got: list[str] = []
            after = None
            while True:
                args: dict[str, Any] = {"sortBy": "createDate", "sortDirection": direction}
                if after:
                    args["after"] = after
                page = await api("QueryZone", limit=2, **args)
                got += [z["uuid"] for z in page["inventories"]]
                after = page.get("next")
                if not after:
                    break
            assert got == want and len(got) == 5
