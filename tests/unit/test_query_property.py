"""Contract: for generated data sets, every operator and joins three deep return exactly what
an independent Python evaluation of the same condition returns (tests/support/querymodel.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.querymodel import (
    GUARANTEED,
    JOINS,
    KINDS,
    REF_TARGET,
    TYPES,
    DataSet,
    PyEvaluator,
    QueryModelService,
    Row,
    build_node,
    load,
    sort_rows,
)
from zmn.api.querylang import Condition
from zmn.core.node import Node
from zmn.core.query import QuerySpec

# QUERY_PROPERTY_EXAMPLES=5000 (with pytest --timeout=0) runs a longer search; the default
# keeps this file under a minute.
SETTINGS = settings(
    max_examples=int(os.environ.get("QUERY_PROPERTY_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values come mostly from a small pool so that conditions often hit the data; the pool holds
# the LIKE wildcards, a quote, operator characters, both cases (text compares ignoring case)
# and a non-ASCII letter in both cases (which SQLite's lower() does not fold).
POOL = ["a", "A", "ab", "aB", "AB", "ba", "b", "a%b", "a_b", "x'y", "é", "É", "=a", "a,b", ""]
ALPHABET = "aAbB%_'=!,éÉ"
LIKE_POOL = ["a", "A", "b", "%", "_", "a%", "A%", "%b", "_B", "a_", "%a%", "é", "É", "'", "", "="]
LIKE_POOL += ["__"]
INTS = [-3, -2, -1, 0, 1, 2, 3]
BOOLS = ["true", "false", "TRUE", "False"]
ALL_OPS = ["=", "!=", ">", "<", ">=", "<=", "?=", "!?=", "~=", "!~=", "=null", "!=null"]
NO_LIKE = [op for op in ALL_OPS if op not in ("~=", "!~=")]
LEAVES = ["name", "label", "kind", "num", "flag", "__userTag__", "__systemTag__"]

# Generation is written once against ``pick(sequence) -> element`` so that Hypothesis drives
# it (shrinkable: sampled_from shrinks to the first element) and so does a seeded
# random.Random (uniform: many more distinct conditions per data set for the same time).
Pick = Callable[[Sequence[Any]], Any]


def hypothesis_pick(draw: st.DrawFn) -> Pick:
    return lambda seq: draw(st.sampled_from(list(seq)))


def random_text(pick: Pick, alphabet: str = ALPHABET, max_size: int = 3) -> str:
    return "".join(pick(alphabet) for _ in range(pick(range(max_size + 1))))


def text(pick: Pick, seen: Sequence[str] = ()) -> str:
    """A string value: one seen in the data, one from the pool or a random one."""
    source = pick(["seen", "pool", "random"] if seen else ["pool", "random"])
    if source == "seen":
        return str(pick(seen))
    return str(pick(POOL)) if source == "pool" else random_text(pick)


def make_data(pick: Pick) -> DataSet:
    data = DataSet()
    for t_index, type_name in enumerate(reversed(TYPES)):  # Qd first: refs point down the chain
        target = REF_TARGET.get(type_name)
        target_uuids = [r.uuid for r in data.rows[target]] if target else []
        # mostly real references, some null and some dangling ones (none where guaranteed)
        dangling = [] if type_name in GUARANTEED else ["f" * 32]
        ref_choices = [*target_uuids * 3, None, *dangling]
        for i in range(pick([3, 4, 5, 3, 4, 2, 1, 0])):
            data.rows[type_name].append(
                Row(
                    uuid=f"{t_index:x}{i:031x}",
                    name=text(pick),
                    num=pick([None, *INTS]),
                    label=pick([None, text(pick)]),
                    flag=pick([False, True]),
                    kind=pick(KINDS),
                    ref=pick(ref_choices) if target else None,
                )
            )
    qbs, qds = data.rows["Qb"], data.rows["Qd"]
    if qbs and qds:
        data.links = {(pick(qbs).uuid, pick(qds).uuid) for _ in range(pick(range(9)))}
    owners = [(t, r.uuid) for t in TYPES for r in data.rows[t]]
    if owners:
        for _ in range(pick(range(11))):
            type_name, uuid = pick(owners)
            data.tags.append((type_name, uuid, pick(["User", "System"]), text(pick) or "t"))
    return data


def make_condition(pick: Pick, root: str, data: DataSet) -> Condition:
    """A condition on a field or tag of ``root`` or of a type 1-3 joins away."""
    joins: list[str] = []
    end = root
    for _ in range(pick(range(4))):
        join = pick(sorted(JOINS[end]))
        joins.append(join)
        end = JOINS[end][join]
    leaf = pick(LEAVES)
    op = pick(NO_LIKE if leaf == "flag" else ALL_OPS)
    if leaf == "num":
        if op in ("~=", "!~="):
            value: str | None = random_text(pick, "-0123%_", 2)
        elif op in ("?=", "!?="):
            value = ",".join(str(pick(INTS)) for _ in range(pick([1, 2, 3])))
        else:
            value = str(pick(INTS))
    elif leaf == "flag":
        value = ",".join(pick(BOOLS) for _ in range(pick([1, 2]))) if "?" in op else pick(BOOLS)
    else:
        # strings: values seen in the data at the end of the path, or from the pool
        if leaf.startswith("__"):
            kind = "User" if leaf == "__userTag__" else "System"
            seen = [t for ty, _u, k, t in data.tags if ty == end and k == kind]
        elif leaf == "kind":
            seen = [*KINDS, "purple", "re", "RED", "Green"]  # enum values ignore case
        else:
            seen = [r.get(leaf) for r in data.rows[end] if r.get(leaf) is not None]
        if op in ("?=", "!?="):
            items = [text(pick, seen) for _ in range(pick([1, 2, 3]))]
            value = ",".join(items)
        elif op in ("~=", "!~="):
            how = pick(["pool", "random", "prefix", "seen"])
            if how == "pool":
                value = pick(LIKE_POOL)
            elif how == "random":
                value = random_text(pick)
            else:
                word = text(pick, seen)
                value = word[:1] + "%" if how == "prefix" else word
        else:
            value = text(pick, seen)
    if op in ("=null", "!=null"):
        value = None
    return Condition(".".join([*joins, leaf]), op, value)


@st.composite
def data_sets(draw: st.DrawFn) -> DataSet:
    return make_data(hypothesis_pick(draw))


@st.composite
def condition_lists(
    draw: st.DrawFn, root: str, data: DataSet, max_size: int = 3
) -> list[Condition]:
    pick = hypothesis_pick(draw)
    return [make_condition(pick, root, data) for _ in range(draw(st.integers(1, max_size)))]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = build_node(tmp_path_factory.mktemp("qprop"), [QueryModelService], memory=True)
    yield n
    n.db.dispose()


# --------------------------------------------------------------------------- helpers


def run(node: Node, spec: QuerySpec) -> dict[str, Any]:
    with node.db.session() as session:
        return node.compiler.run(session, spec, None)


def uuids(result: dict[str, Any]) -> list[str]:
    return [inv["uuid"] for inv in result["inventories"]]


def reload(node: Node, data: DataSet) -> PyEvaluator:
    with node.db.tx() as s:
        load(s, data)
    return PyEvaluator(data)


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(data=data_sets(), st_data=st.data())
def test_conditions_match_python_evaluation(
    node: Node, data: DataSet, st_data: st.DataObject
) -> None:
    evaluator = reload(node, data)
    rng = st_data.draw(st.randoms(use_true_random=True), label="rng")
    queries = []
    for _ in range(2):  # shrinkable conditions
        root = st_data.draw(st.sampled_from(TYPES), label="root")
        queries.append((root, st_data.draw(condition_lists(root, data), label="conditions")))
    for _ in range(12):  # and many uniform ones: queries are cheap next to a data set
        root = rng.choice(TYPES)
        queries.append(
            (root, [make_condition(rng.choice, root, data) for _ in range(rng.randint(1, 3))])
        )
    for root, conds in queries:
        expected = [r.uuid for r in sort_rows(evaluator.select(root, conds), None, "asc")]
        result = run(node, QuerySpec(root, conds))
        assert uuids(result) == expected, [str(c) for c in conds]
        count = run(node, QuerySpec(root, conds, count=True))
        assert count == {"total": len(expected)}


@SETTINGS
@given(data=data_sets(), st_data=st.data())
def test_sort_limit_start_fields_and_group_by(
    node: Node, data: DataSet, st_data: st.DataObject
) -> None:
    evaluator = reload(node, data)
    root = st_data.draw(st.sampled_from(TYPES), label="root")
    conds = st_data.draw(st.just([]) | condition_lists(root, data, 1), label="conditions")
    matching = evaluator.select(root, conds)

    sort_by = st_data.draw(st.sampled_from([None, "name", "num", "label", "flag", "kind"]))
    direction = st_data.draw(st.sampled_from(["asc", "desc"]))
    limit = st_data.draw(st.integers(min_value=0, max_value=6))
    start = st_data.draw(st.integers(min_value=0, max_value=6))
    fields = st_data.draw(
        st.none()
        | st.lists(
            st.sampled_from(["uuid", "name", "num", "flag"]), min_size=1, max_size=3, unique=True
        )
    )
    ordered = sort_rows(matching, sort_by, direction)[start : start + limit]
    spec = QuerySpec(
        root,
        conds,
        limit=limit,
        start=start,
        sortBy=sort_by,
        sortDirection=direction,
        fields=fields,
        replyWithCount=True,
    )
    result = run(node, spec)
    assert result["total"] == len(matching)
    if fields is None:
        assert uuids(result) == [r.uuid for r in ordered]
        for inv, row in zip(result["inventories"], ordered, strict=True):
            assert (inv["name"], inv["num"], inv["label"], inv["flag"], inv["kind"]) == (
                row.name,
                row.num,
                row.label,
                row.flag,
                row.kind,
            )
    else:
        assert result["inventories"] == [{f: row.get(f) for f in fields} for row in ordered]

    group_by = st_data.draw(st.sampled_from(["kind", "flag", "num", "label"]))
    groups: dict[Any, int] = {}
    for row in matching:
        groups[row.get(group_by)] = groups.get(row.get(group_by), 0) + 1
    keys = sorted(groups, key=lambda k: (k is not None, k if k is not None else 0))
    expected_groups = [{group_by: k, "total": groups[k]} for k in keys]
    assert run(node, QuerySpec(root, conds, groupBy=group_by)) == {"groups": expected_groups}
