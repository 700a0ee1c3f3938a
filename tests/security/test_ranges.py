"""Numbers in range (issue 16, item 5).

Every integer and float parameter has a range in the catalogue; a value outside it is refused
naming the field and the range, and a number wider than any database column (a "big integer")
is ``ARG.INVALID`` for every parameter of every API, sent by an admin or by a tenant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from zmn.api.errors import InvalidArgument, PermissionDenied, ZmnError
from zmn.api.limits import INT64_MAX
from zmn.api.message import Param, decode_args, params_of
from zmn.core.node import Node

in_module_loop = pytest.mark.asyncio(loop_scope="module")
BIG = [2**64, -(2**64), 10**40, INT64_MAX + 1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Node, str]]:
    async with running_node(tmp_path_factory.mktemp("ranges") / "home") as (node, _server):
        api = Api(node)
        await api("CreateAccount", name="tenant", password="tenant-password")
        reply = await api("LogInByAccount", accountName="tenant", password="tenant-password")
        yield node, str(reply["inventory"]["uuid"])


def numeric(p: Param) -> bool:
    kind = p.type["type"] if p.type["type"] != "list" else p.type["items"]["type"]
    return kind in ("int", "float")


def filler(p: Param) -> Any:
    """A well-typed value for a required parameter, so that only the tested one is wrong."""
    kind = p.type["type"]
    if kind == "enum":
        return p.type["enum"][0]
    if kind == "list":
        return []
    if kind == "map":
        return {}
    if kind == "bool":
        return False
    if kind in ("int", "float"):
        return p.to_dict()["min"]
    return "x"


def numeric_params(node: Node) -> list[tuple[str, Param]]:
    out: list[tuple[str, Param]] = []
    for name, cls in sorted(node.apis.apis.items()):
        if not cls.__api__.internal:
            out.extend((name, p) for p in params_of(cls) if numeric(p))
    return out


@in_module_loop
async def test_every_number_has_a_range_in_the_catalogue(env: tuple[Node, str]) -> None:
    node, _ = env
    catalogue = (await Api(node)("GetApiCatalogue"))["catalogue"]
    seen = 0
    for entry in catalogue["apis"]:
        for p in entry["params"]:
            kind = p["type"] if p["type"] != "list" else p["items"]["type"]
            if kind in ("int", "float"):
                seen += 1
                assert p["min"] <= p["max"], (entry["name"], p)
                assert -(2**63) <= p["min"] and p["max"] <= INT64_MAX, (entry["name"], p)
    assert seen >= 40
    ranges = {
        p["name"]: (p.get("min"), p.get("max")) for e in catalogue["apis"] for p in e["params"]
    }
    assert ranges["vlan"] == (1, 4094)
    assert ranges["sshPort"] == (1, 65535)
    assert ranges["cpuNum"] == (1, 1024)


@in_module_loop
@pytest.mark.parametrize("big", BIG)
async def test_big_integers_are_arg_invalid_everywhere(env: tuple[Node, str], big: int) -> None:
    node, tenant = env
    checked = 0
    for api_name, param in numeric_params(node):
        cls = node.apis.apis[api_name]
        args = {p.name: filler(p) for p in params_of(cls) if p.required}
        args[param.name] = [big] if param.type["type"] == "list" else big
        for who in ({"peer_admin": True}, {"session": tenant}):
            try:
                await node.execute(api_name, dict(args), **who)  # type: ignore[arg-type]
            except InvalidArgument as exc:
                assert exc.code == "ARG.INVALID", (api_name, param.name, exc.code, exc.message)
                assert exc.field and exc.field.startswith(param.name), (api_name, exc.field)
                rng = param.to_dict()
                assert f"{rng['min']}" in exc.message and f"{rng['max']}" in exc.message
                checked += 1
            except PermissionDenied:
                assert "session" in who and cls.__api__.admin, api_name
            except ZmnError as exc:
                pytest.fail(f"{api_name} {param.name}={big}: {exc.code} {exc.message}")
            else:
                pytest.fail(f"{api_name} accepted {param.name}={big}")
    assert checked >= 40


@in_module_loop
async def test_out_of_range_names_field_and_range(env: tuple[Node, str]) -> None:
    node, tenant = env
    api = Api(node)
    vm = {"name": "v", "imageUuid": "i", "l3NetworkUuids": ["l3"]}
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("CreateVmInstance", {**vm, "cpuNum": 5000}, "cpuNum", "1-1024"),
        ("CreateVmInstance", {**vm, "memorySize": 0}, "memorySize", "1-"),
        ("QueryZone", {"limit": 100_001}, "limit", "0-100000"),
        ("QueryZone", {"start": -1}, "start", "0-"),
        ("WaitJob", {"uuid": "0" * 32, "timeout": "inf"}, "timeout", "finite"),
        ("WaitJob", {"uuid": "0" * 32, "timeout": "nan"}, "timeout", "finite"),
    ]
    for api_name, args, field, words in cases:
        for who in ({"peer_admin": True}, {"session": tenant}):
            with pytest.raises(InvalidArgument) as info:
                await node.execute(api_name, args, **who)  # type: ignore[arg-type]
            assert (info.value.code, info.value.field) == ("ARG.INVALID", field), info.value
            assert words in info.value.message, info.value.message
    # a field with its own code keeps it inside the 64-bit range, ARG.INVALID beyond
    vlan = {"name": "v", "zoneUuid": "z", "physicalInterface": "eth0"}
    with pytest.raises(InvalidArgument) as info:
        await api("CreateL2VlanNetwork", **vlan, vlan=4095)
    assert (info.value.code, info.value.field) == ("L2_NETWORK.INVALID_VLAN", "vlan")
    with pytest.raises(InvalidArgument) as info:
        await api("CreateL2VlanNetwork", **vlan, vlan=2**70)
    assert (info.value.code, info.value.field) == ("ARG.INVALID", "vlan")


def test_internal_messages_are_not_held_to_client_limits(env: tuple[Node, str]) -> None:
    """Services build internal messages (decoded again on the RabbitMQ bus): a host's
    connect parameters may hold a private key of many lines."""
    node, _ = env
    cls = node.apis.get("AddHost")
    assert cls.__api__.internal
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "A" * 3000 + "\n-----END-----\n"
    args = {"name": "h", "managementIp": "10.0.0.1", "clusterUuid": "c",
            "hypervisorType": "KVM", "params": {"sshPrivateKey": key}}  # fmt: skip
    assert decode_args(cls, args).params["sshPrivateKey"] == key  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument):  # the same text from a client is refused
        decode_args(node.apis.get("CreateZone"), {"name": "z", "description": key})
