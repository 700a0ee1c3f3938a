"""The query compiler on a hand-made data set: joins, tags, options, errors and safety.

The generated-data contract lives in test_query_property.py; these cases pin down behaviour
by example (and the error shapes) so a failure reads plainly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from tests.support.querymodel import (
    JOINS,
    DataSet,
    QaVO,
    QBase,
    QueryModelService,
    Row,
    build_node,
    load,
)
from zmn.api.errors import InvalidArgument, PermissionDenied
from zmn.api.querylang import parse_condition
from zmn.core.bus import Principal
from zmn.core.models import AccountResourceRefVO
from zmn.core.node import Node
from zmn.core.query import QueryCompiler, QuerySpec, parse_conditions
from zmn.core.resource import ResourceRegistry, ResourceType
from zmn.services.query.service import QueryService

A1, A2, A3 = "a1".ljust(32, "0"), "a2".ljust(32, "0"), "a3".ljust(32, "0")
B1, B2 = "b1".ljust(32, "0"), "b2".ljust(32, "0")
C1, C2 = "c1".ljust(32, "0"), "c2".ljust(32, "0")
D1, D2 = "d1".ljust(32, "0"), "d2".ljust(32, "0")


def sample() -> DataSet:
    """a1 -> b1 -> c1 -> d1, a2 -> b2 -> c2 -> (none), a3 -> (none); b1 <-> d2 linked."""
    data = DataSet()
    data.rows["Qd"] = [
        Row(D1, "web", 5, "x", True, "red"),
        Row(D2, "Web", 7, None, False, "blue"),
    ]
    data.rows["Qc"] = [
        Row(C1, "c-one", 1, "l", False, "green", D1),
        Row(C2, "c-two", None, None, True, "red", None),
    ]
    data.rows["Qb"] = [
        Row(B1, "b-one", 2, "50%", False, "red", C1),
        Row(B2, "b_two", 3, "5x", True, "blue", C2),
    ]
    data.rows["Qa"] = [
        Row(A1, "alpha", 10, "O'Brien", True, "red", B1),
        Row(A2, "beta", 20, None, False, "green", B2),
        Row(A3, "gamma", None, "x", False, "blue", None),
    ]
    data.links = {(B1, D2)}
    data.tags = [
        ("Qa", A1, "User", "env::prod"),
        ("Qa", A1, "User", "team::a"),
        ("Qa", A2, "User", "env::dev"),
        ("Qa", A2, "System", "hostname::h2"),
        ("Qb", A1, "User", "env::prod"),  # same UUID, other type: must not count for Qa
        ("Qd", D1, "User", "gold"),
    ]
    return data


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> Iterator[Node]:
    # db_engine: one node per engine when ZMN_TEST_DB selects several (tests/conftest.py)
    n = build_node(tmp_path_factory.mktemp("qc"), [QueryModelService], memory=True)
    with n.db.tx() as s:
        load(s, sample())
    yield n
    n.db.dispose()


def query(
    node: Node, resource: str, *conds: str, principal: Principal | None = None, **options: Any
) -> Any:
    spec = QuerySpec(resource, [parse_condition(c) for c in conds], **options)
    with node.db.session() as s:
        return node.compiler.run(s, spec, principal)


def names(node: Node, resource: str, *conds: str) -> list[str]:
    return [inv["name"] for inv in query(node, resource, *conds)["inventories"]]


@pytest.mark.parametrize(
    ("conds", "expected"),
    [
        (["name=alpha"], ["alpha"]),
        (["name!=alpha"], ["beta", "gamma"]),
        (["num>10"], ["beta"]),
        (["num>=10"], ["alpha", "beta"]),
        (["num<20"], ["alpha"]),
        (["num<=20"], ["alpha", "beta"]),
        (["num!=10"], ["beta"]),  # null is never != anything
        (["num?=10,30"], ["alpha"]),
        (["num!?=10,30"], ["beta"]),
        (["label=null"], ["beta"]),
        (["label!=null"], ["alpha", "gamma"]),
        (["name~=ph"], ["alpha"]),  # no wildcard: substring
        (["name~=%a"], ["alpha", "beta", "gamma"]),
        (["name~=_eta"], ["beta"]),
        (["name~=A%"], ["alpha"]),  # text compares ignoring case, as zstack-cli's
        (["name=ALPHA"], ["alpha"]),
        (["name!=Alpha"], ["beta", "gamma"]),
        (["name?=BETA,Gamma"], ["beta", "gamma"]),
        (["name!?=BETA,Gamma"], ["alpha"]),
        (["name!~=AL%"], ["beta", "gamma"]),
        (["name~=_ETA"], ["beta"]),
        (["name~=LPH"], ["alpha"]),
        (["kind=RED"], ["alpha"]),  # an enum value is matched to its spelling
        (["name!~=a%"], ["beta", "gamma"]),
        (["label!~=x"], ["alpha"]),
        (["kind?=red,green"], ["alpha", "beta"]),
        (["kind=purple"], []),  # not an enum value: matches nothing, is not an error
        (["flag=true"], ["alpha"]),
        (["num>5", "flag=false"], ["beta"]),
    ],
)
def test_own_field_operators(node: Node, conds: list[str], expected: list[str]) -> None:
    assert names(node, "Qa", *conds) == expected


@pytest.mark.parametrize(
    ("resource", "cond", "expected"),
    [
        ("Qa", "qb.name=b-one", ["alpha"]),
        ("Qa", "qb.qc.name~=c-", ["alpha", "beta"]),
        ("Qa", "qb.qc.qd.name=web", ["alpha"]),  # three joins deep
        ("Qa", "qb.qc.qd.name=null", []),  # existential: no joined row, no match
        ("Qa", "qb.qc.qd.label=null", []),
        ("Qa", "qb.qd.name=Web", ["alpha"]),  # through the link table
        ("Qd", "qb.qa.name=alpha", ["Web"]),  # the link table the other way
        ("Qd", "qc.qb.qa.name?=alpha,beta", ["web"]),  # reverse joins
        ("Qb", "qa.num>=10", ["b-one", "b_two"]),
        ("Qb", "qa.qb.name=b-one", ["b-one"]),  # there and back
        ("Qc", "qb.qd.__userTag__=gold", []),  # d2 (linked) has no tag; d1 is not linked
        ("Qb", "qc.qd.__userTag__=gold", ["b-one"]),
        ("Qa", "qb.label~=50%", ["alpha"]),
        ("Qa", "qb.label~=5_", ["beta"]),  # with a wildcard the pattern is anchored
        ("Qa", "qb.label~=5%", ["alpha", "beta"]),
    ],
)
def test_joins(node: Node, resource: str, cond: str, expected: list[str]) -> None:
    assert names(node, resource, cond) == expected


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ("__userTag__=env::prod", ["alpha"]),
        ("__userTag__=ENV::Prod", ["alpha"]),  # tags compare ignoring case too
        ("__userTag__!=env::prod", ["beta", "gamma"]),  # no tag equals it, including no tags
        ("__userTag__~=env", ["alpha", "beta"]),
        ("__userTag__!~=team", ["beta", "gamma"]),
        ("__userTag__?=team::a,env::dev", ["alpha", "beta"]),
        ("__userTag__!?=team::a,env::dev", ["gamma"]),
        ("__userTag__=null", ["gamma"]),
        ("__userTag__!=null", ["alpha", "beta"]),
        ("__systemTag__=hostname::h2", ["beta"]),
        ("__systemTag__=null", ["alpha", "gamma"]),
    ],
)
def test_tags(node: Node, cond: str, expected: list[str]) -> None:
    assert names(node, "Qa", cond) == expected


@pytest.mark.parametrize(
    "cond",
    [
        "name=x' OR '1'='1",
        "name~=x' OR '1'='1",
        "name?=x' OR '1'='1,y",
        "qb.qc.name=x' OR '1'='1",
        "__userTag__=x' OR '1'='1",
        "name=alpha'; DROP TABLE qtest_a; --",
    ],
)
def test_injection_is_just_a_value(node: Node, cond: str) -> None:
    assert query(node, "Qa", cond) == {"inventories": []}
    assert names(node, "Qa") == ["alpha", "beta", "gamma"]  # the table is still there


def test_negated_injection_matches_everything_not_equal(node: Node) -> None:
    assert names(node, "Qa", "name!=x' OR '1'='1") == ["alpha", "beta", "gamma"]


def test_unknown_field_lists_fields_and_joins(node: Node) -> None:
    with pytest.raises(InvalidArgument) as info:
        query(node, "Qa", "nmae=x")
    err = info.value
    assert err.code == "QUERY.UNKNOWN_FIELD"
    assert err.field == "nmae"
    assert "did you mean name?" in err.message
    assert {"name", "num", "label", "qbUuid", "qb"} <= set(err.details["choices"])


def test_unknown_field_at_the_end_of_a_join(node: Node) -> None:
    with pytest.raises(InvalidArgument) as info:
        query(node, "Qa", "qb.qc.colour=red")
    assert info.value.code == "QUERY.UNKNOWN_FIELD"
    assert info.value.field == "qb.qc.colour"
    assert "Qc has no field 'colour'" in info.value.message
    assert "qd" in info.value.details["choices"]


def test_unknown_join_lists_joins(node: Node) -> None:
    with pytest.raises(InvalidArgument) as info:
        query(node, "Qb", "qx.name=x")
    err = info.value
    assert err.code == "QUERY.UNKNOWN_JOIN"
    assert err.field == "qx.name"
    assert sorted(err.details["choices"]) == ["qa", "qc", "qd"]
    with pytest.raises(InvalidArgument) as info:
        query(node, "Qa", "name.first=x")  # a field used as a join
    assert info.value.code == "QUERY.UNKNOWN_JOIN"


@pytest.mark.parametrize("cond", ["num=ten", "num>1.5", "flag=yes", "num?=1,x"])
def test_value_of_the_wrong_type(node: Node, cond: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        query(node, "Qa", cond)
    assert info.value.code == "QUERY.BAD_VALUE"
    assert info.value.field == parse_condition(cond).name


def test_count_and_reply_with_count(node: Node) -> None:
    assert query(node, "Qa", "num!=null", count=True) == {"total": 2}
    result = query(node, "Qa", replyWithCount=True, limit=1)
    assert result["total"] == 3
    assert len(result["inventories"]) == 1


def test_sort_limit_start(node: Node) -> None:
    def order(**options: Any) -> list[str]:
        return [inv["name"] for inv in query(node, "Qa", **options)["inventories"]]

    assert order(sortBy="num") == ["gamma", "alpha", "beta"]  # null first ascending
    assert order(sortBy="num", sortDirection="desc") == ["beta", "alpha", "gamma"]
    assert order(sortBy="name", sortDirection="desc", limit=2) == ["gamma", "beta"]
    assert order(sortBy="name", start=1, limit=1) == ["beta"]
    assert order(start=5) == []
    assert order(limit=0) == []


def test_fields_and_group_by(node: Node) -> None:
    result = query(node, "Qa", "num!=null", fields=["name", "num"])
    assert result["inventories"] == [{"name": "alpha", "num": 10}, {"name": "beta", "num": 20}]
    assert query(node, "Qa", groupBy="kind") == {
        "groups": [
            {"kind": "blue", "total": 1},
            {"kind": "green", "total": 1},
            {"kind": "red", "total": 1},
        ]
    }
    assert query(node, "Qa", "num>0", groupBy="flag") == {
        "groups": [{"flag": False, "total": 1}, {"flag": True, "total": 1}]
    }


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"sortBy": "colour"}, "sortBy"),
        ({"groupBy": "colour"}, "groupBy"),
        ({"fields": ["name", "colour"]}, "fields"),
        ({"limit": -1}, "limit"),
        ({"limit": 100_001}, "limit"),
        ({"start": -1}, "start"),
        ({"sortBy": "name", "sortDirection": "up"}, "sortDirection"),
    ],
)
def test_bad_options(node: Node, options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        query(node, "Qa", **options)
    assert info.value.field == field


def test_unknown_resource_type(node: Node) -> None:
    with pytest.raises(InvalidArgument, match="did you mean Qa"):
        query(node, "Qaa")


def test_parse_conditions_accepts_strings_and_objects() -> None:
    conds = parse_conditions(
        ["name=a", {"name": "num", "op": ">=", "value": 3}, {"name": "label", "op": "=null"}]
    )
    assert [str(c) for c in conds] == ["name=a", "num>=3", "label=null"]
    with pytest.raises(InvalidArgument) as info:
        parse_conditions([{"field": "name"}])
    assert info.value.field == "conditions"


def test_ownership_and_admin_only(node: Node) -> None:
    registry = ResourceRegistry()
    registry.add(ResourceType("Qa", QaVO, "test", "qa", owned=True))
    registry.add(ResourceType("Secret", QaVO, "test", "secret", admin_only=True))
    registry.finalize()
    compiler = QueryCompiler(registry)
    alice = Principal("1" * 32, "alice", "Normal")
    admin = Principal("0" * 32, "admin", "SystemAdmin")
    with node.db.tx() as s:
        s.add(
            AccountResourceRefVO(resourceUuid=A2, resourceType="Qa", accountUuid=alice.accountUuid)
        )
    try:
        with node.db.session() as s:
            mine = compiler.run(s, QuerySpec("Qa"), alice)
            assert [inv["uuid"] for inv in mine["inventories"]] == [A2]
            assert compiler.run(s, QuerySpec("Qa", count=True), alice) == {"total": 1}
            assert compiler.run(s, QuerySpec("Qa", count=True), admin) == {"total": 3}
            with pytest.raises(PermissionDenied):
                compiler.run(s, QuerySpec("Secret"), alice)
            assert compiler.run(s, QuerySpec("Secret", count=True), admin) == {"total": 3}
    finally:
        with node.db.tx() as s:
            s.query(AccountResourceRefVO).delete()


async def test_query_api_end_to_end(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home", services=[QueryService, QueryModelService]) as (
        n,
        _server,
    ):
        QBase.metadata.create_all(n.db.engine)
        with n.db.tx() as s:
            load(s, sample())
        api = Api(n)
        result = await api("QueryQa", conditions=["qb.qc.qd.name=web"])
        assert [inv["name"] for inv in result["inventories"]] == ["alpha"]
        result = await api(
            "QueryQa", conditions=[{"name": "num", "op": ">", "value": "5"}], count=True
        )
        assert result == {"total": 2}
        with pytest.raises(InvalidArgument) as info:
            await api("QueryQd", conditions=["qz.name=x"])
        assert info.value.code == "QUERY.UNKNOWN_JOIN"
        assert (await api("QueryQa", conditions=["name=x' OR '1'='1"])) == {"inventories": []}


def test_values_are_bound_never_inlined(node: Node) -> None:
    rt = node.resources.get("Qa")
    for text in ("name=zz'q", "qb.qc.label~=zz'q", "__userTag__!?=zz'q,yy", "num>=12345"):
        clause = node.compiler.where(rt, parse_condition(text))
        compiled = clause.compile()
        assert "zz'q" not in str(compiled)
        assert "12345" not in str(compiled)
        assert any(v in ("zz'q", "%zz'q%", ["zz'q", "yy"], 12345) for v in compiled.params.values())


def test_registry_derives_the_joins_the_evaluator_assumes(node: Node) -> None:
    joins = {
        name: {e.name: e.target for e in rt.expansions.values()}
        for name, rt in node.resources.types.items()
    }
    assert joins == JOINS
    assert node.resources.get("Qb").expansions["qd"].via is not None  # the link table


def test_fields_naming_none_of_a_hooks_keys_skip_the_hook(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VM's NICs and volumes are read only for a query that shows them (hook_adds)."""
    rt = node.resources.get("Qa")
    runs: list[int] = []

    def hook(_session: Any, invs: list[dict[str, Any]]) -> None:
        runs.append(len(invs))
        for inv in invs:
            inv["extra"] = inv["name"].upper()

    monkeypatch.setattr(rt, "inventory_hook", hook)
    monkeypatch.setattr(rt, "hook_adds", ("extra",))
    assert query(node, "Qa", "num=10", fields=["name"])["inventories"] == [{"name": "alpha"}]
    assert runs == []
    got = query(node, "Qa", "num=10", fields=["name", "extra"])["inventories"]
    assert got == [{"name": "alpha", "extra": "ALPHA"}] and runs == [1]
    assert query(node, "Qa", "num=10")["inventories"][0]["extra"] == "ALPHA"
    assert runs == [1, 1]
    # a hook that does not say which keys it adds may change any: it always runs
    monkeypatch.setattr(rt, "hook_adds", ())
    assert query(node, "Qa", "num=10", fields=["name"])["inventories"] == [{"name": "alpha"}]
    assert runs == [1, 1, 1]
