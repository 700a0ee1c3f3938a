"""Fuzzing the query language and compiler: every bad query is a typed error, never an
internal one.

:func:`parse_condition` gets arbitrary text. ``Query<Type>`` gets arbitrary conditions and
options through the real API path (decode, compile, run on SQLite) of a node holding a small
cloud, as an admin and as a normal account. Conditions are mostly built from the registry's
own fields and joins, with every operator and awkward values, so they reach the compiler
and the database rather than stopping at "unknown field".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import build_cloud
from zmn.api.errors import InternalError, InvalidArgument, NotFound, PermissionDenied, ZmnError
from zmn.api.querylang import ALL_OPERATORS, Condition, parse_condition
from zmn.core.bus import Principal
from zmn.core.node import Node

BUDGET = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@settings(BUDGET, max_examples=1100)
@given(st.text(max_size=40) | st.text(alphabet="ab._=!<>?~%nul,", max_size=16))
def test_parse_condition_of_any_text(text: str) -> None:
    try:
        cond = parse_condition(text)
    except InvalidArgument as exc:
        assert exc.code in ("QUERY.BAD_CONDITION", "QUERY.BAD_OPERATOR")
        return
    assert isinstance(cond, Condition) and cond.op in ALL_OPERATORS
    assert parse_condition(str(cond)) == cond  # what it prints, it reads back


@dataclass
class World:
    node: Node
    tenant: Principal
    paths: dict[str, list[str]]  # resource type -> condition fields, joins included


def field_paths(node: Node, type_name: str) -> list[str]:
    """Fields of a type and of the types one or two joins away, plus the tag fields."""
    rt = node.resources.types[type_name]
    out = [*rt.fields, "__userTag__", "__systemTag__"]
    for exp in rt.expansions.values():
        target = node.resources.types[exp.target]
        out += [f"{exp.name}.{f}" for f in target.fields]
        for exp2 in list(target.expansions.values())[:4]:
            out += [
                f"{exp.name}.{exp2.name}.{f}"
                for f in list(node.resources.types[exp2.target].fields)[:3]
            ]
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory, cheap_hashes_module: Any
) -> AsyncIterator[World]:
    home = tmp_path_factory.mktemp("fuzz-query") / "home"
    async with running_node(home) as (node, _server):
        api = Api(node)
        await build_cloud(api)  # rows to compare against
        account = await api("CreateAccount", name="tenant", password="tenant-password")
        inv = account["inventory"]
        tenant = Principal(inv["uuid"], inv["name"], "Normal")
        paths = {t: field_paths(node, t) for t in node.resources.types}
        yield World(node, tenant, paths)


VALUES = st.sampled_from(
    ["", "1", "-1", "0", "2.5", "1e400", "nan", "inf", "9" * 30, "true", "FALSE", "null",
     "a,b", ",,", "%", "_", "a%b", "'", '"', "\\", "é", "\x00", "2026-01-01", "2026-13-45",
     "2026-01-01T00:00:00+05:00", "0" * 32, "Enabled", "Running", "; DROP TABLE zone; --"]
) | st.text(max_size=10)  # fmt: skip


@st.composite
def query(draw: st.DrawFn, paths: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    type_name = draw(st.sampled_from(sorted(paths)))
    fields = paths[type_name]
    conditions: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            conditions.append(draw(st.text(max_size=20)))
        elif kind == 1:
            conditions.append(
                {
                    "name": draw(st.sampled_from(fields)),
                    "op": draw(st.sampled_from([*ALL_OPERATORS, "==", ""])),
                    "value": draw(VALUES | st.integers()),
                }
            )
        else:
            name = draw(st.sampled_from(fields) | st.text(alphabet="ab.", min_size=1, max_size=5))
            op = draw(st.sampled_from(ALL_OPERATORS))
            value = "" if op.endswith("null") else draw(VALUES)
            conditions.append(f"{name}{op}{value}")
    args: dict[str, Any] = {"conditions": conditions}
    options = {
        "limit": st.integers(-5, 200_000) | st.sampled_from(["10", "x", ""]),
        "start": st.integers(-5, 10**20),
        "count": st.booleans(),
        "replyWithCount": st.booleans(),
        "sortBy": st.sampled_from(fields) | st.text(max_size=6),
        "sortDirection": st.sampled_from(["asc", "desc", "up", ""]),
        "fields": st.lists(st.sampled_from(fields) | st.text(max_size=6), max_size=3),
        "groupBy": st.sampled_from(fields) | st.text(max_size=6),
    }
    for key in draw(st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True)):
        args[key] = draw(options[key])
    return type_name, args


@pytest.mark.asyncio(loop_scope="module")
@settings(BUDGET, max_examples=600)
@given(st.data())
async def test_query_apis_answer_or_give_a_typed_error(world: World, data: st.DataObject) -> None:
    type_name, args = data.draw(query(world.paths))
    as_tenant = data.draw(st.booleans())
    principal = world.tenant if as_tenant else None
    try:
        result, _job = await world.node.execute(
            f"Query{type_name}", args, peer_admin=True, principal=principal
        )
    except ZmnError as exc:
        assert not isinstance(exc, InternalError), f"Query{type_name} {args}: {exc}"
        allowed: tuple[type[ZmnError], ...] = (InvalidArgument, NotFound)
        if as_tenant:
            allowed += (PermissionDenied,)
        assert isinstance(exc, allowed), f"Query{type_name} {args}: {type(exc).__name__} {exc}"
        return
    assert isinstance(result, dict)
    assert {"inventories", "total", "groups"} & set(result)
