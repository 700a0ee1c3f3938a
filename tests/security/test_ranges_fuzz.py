"""No argument a client can send gets ``INTERNAL`` (issue 16, item 5).

Hypothesis sends generated arguments (big integers, non-finite floats, control characters,
over-long text, wrong types, nested lists and maps) to every API a tenant may call, through a
real node with every built-in service, as a logged-in tenant. Whatever a call answers must be a
result or an error with a stable code; ``INTERNAL`` means a bug a client can trigger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.inproc import Api, running_node
from zmn.api.errors import ZmnError
from zmn.api.message import params_of
from zmn.core.node import Node

in_module_loop = pytest.mark.asyncio(loop_scope="module")
SKIP = {"LogOut"}  # ends the session the fuzzer runs on (its own check is a plain test)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tenant(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Node, str]]:
    async with running_node(tmp_path_factory.mktemp("fuzz") / "home") as (node, _server):
        api = Api(node)
        await api("CreateZone", name="z1")
        await api("CreateAccount", name="fuzzer", password="fuzzer-password")
        reply = await api("LogInByAccount", accountName="fuzzer", password="fuzzer-password")
        yield node, str(reply["inventory"]["uuid"])


def tenant_apis() -> dict[str, list[str]]:
    import tempfile
    from pathlib import Path

    from zmn.core.config import BootConfig

    with tempfile.TemporaryDirectory() as tmp:
        node = Node(BootConfig.load(Path(tmp), env={}))
        try:
            node.load_services()
            return {
                name: [p.name for p in params_of(cls)]
                for name, cls in sorted(node.apis.apis.items())
                if not (cls.__api__.admin or cls.__api__.internal) and name not in SKIP
            }
        finally:
            node.db.dispose()


APIS = tenant_apis()
big = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**40, -(10**40), 2**31, -1, 0])
nasty = st.sampled_from(
    ["", "x" * 70_000, "\x1b[2J", "a\u202eb", "\x00", "z1", "0" * 32, "1e400", "nan", "-inf",
     "9" * 40, "a,b", "k:v", "name=z1", "uuid!=null", "../../etc/passwd", "Ingress", "TCP"]
)  # fmt: skip
scalar = (
    st.none() | st.booleans() | st.integers() | big | st.floats() | st.text(max_size=12) | nasty
)
value = scalar | st.lists(scalar, max_size=3) | st.dictionaries(nasty, scalar, max_size=3)


@st.composite
def call(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(APIS)))
    names = APIS[name] or ["x"]
    args = {draw(st.sampled_from(names)): draw(value) for _ in range(draw(st.integers(0, 6)))}
    return name, args


@in_module_loop
@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(call())
async def test_no_tenant_argument_gets_internal(
    tenant: tuple[Node, str], example: tuple[str, dict[str, Any]]
) -> None:
    node, session = tenant
    name, args = example
    try:
        await node.execute(name, args, session=session)
    except ZmnError as exc:
        assert exc.code != "INTERNAL", f"{name} {args!r}: {exc.message}"
        assert exc.kind != "InternalError"


@in_module_loop
async def test_the_tenant_session_is_still_valid(tenant: tuple[Node, str]) -> None:
    node, session = tenant
    result, _ = await node.execute("QueryZone", {"count": True}, session=session)
    assert "total" in result
