"""Security groups without VMs: groups, rule validation (errors name the field), rule lists,
duplicates, remote groups, L3 attachment, delete, joins, zcli, CheckConsistency after each."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from zmn.api.errors import Conflict, InvalidArgument, NotFound
from zmn.core.node import Node

ROOT = Path(__file__).resolve().parents[2]


async def consistent(api: Api) -> None:
    assert (await api("CheckConsistency"))["violations"] == []


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Api, Node]]:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        yield api, node
        await consistent(api)


async def group(api: Api, name: str) -> dict[str, Any]:
    inv: dict[str, Any] = (await api("QuerySecurityGroup", conditions=[f"name={name}"]))[
        "inventories"
    ][0]
    return inv


async def test_group_crud_and_single_rule(env: tuple[Api, Node]) -> None:
    api, _ = env
    sg = (await api("CreateSecurityGroup", name="web", description="web tier"))["inventory"]
    assert sg["state"] == "Enabled" and sg["rules"] == [] and sg["description"] == "web tier"
    inv = (
        await api(
            "AddSecurityGroupRule",
            securityGroupUuid="web",
            type="Ingress",
            protocol="TCP",
            startPort="22",
            endPort="22",
            allowedCidr="0.0.0.0/0",
        )
    )["inventory"]
    assert [
        (r["type"], r["protocol"], r["startPort"], r["endPort"], r["allowedCidr"])
        for r in inv["rules"]
    ] == [("Ingress", "TCP", 22, 22, "0.0.0.0/0")]
    # endPort defaults to startPort; CIDR defaults to everything; ICMP has no ports
    inv = (
        await api(
            "AddSecurityGroupRule",
            securityGroupUuid=sg["uuid"],
            rules=[
                {"type": "Ingress", "protocol": "TCP", "startPort": 443},
                {"type": "egress", "protocol": "icmp", "allowedCidr": "10.0.0.0/8"},
                {"type": "Egress", "protocol": "ALL", "startPort": -1, "endPort": -1},
            ],
        )
    )["inventory"]
    got = [
        (r["type"], r["protocol"], r["startPort"], r["endPort"], r["allowedCidr"])
        for r in inv["rules"]
    ]
    assert got[1:] == [
        ("Ingress", "TCP", 443, 443, "0.0.0.0/0"),
        ("Egress", "ICMP", None, None, "10.0.0.0/8"),
        ("Egress", "ALL", None, None, "0.0.0.0/0"),
    ]
    rules = await api(
        "QuerySecurityGroupRule", conditions=["securityGroup.name=web", "protocol=TCP"]
    )
    assert sorted(r["startPort"] for r in rules["inventories"]) == [22, 443]

    renamed = (await api("UpdateSecurityGroup", uuid="web", name="web2"))["inventory"]
    assert renamed["name"] == "web2"
    disabled = (await api("ChangeSecurityGroupState", uuid="web2", stateEvent="disable"))[
        "inventory"
    ]
    assert disabled["state"] == "Disabled"
    with pytest.raises(Conflict) as dup_name:
        await api("CreateSecurityGroup", name="web2")
    assert dup_name.value.code == "SECURITY_GROUP.DUPLICATE_NAME"

    # delete a rule, then the group with the rest
    tcp22 = next(r["uuid"] for r in inv["rules"] if r["startPort"] == 22)
    await api("DeleteSecurityGroupRule", ruleUuids=[tcp22])
    assert len((await group(api, "web2"))["rules"]) == 3
    with pytest.raises(NotFound) as gone:
        await api("DeleteSecurityGroupRule", ruleUuids=[tcp22])
    assert gone.value.code == "SECURITY_GROUP_RULE.NOT_FOUND"
    await api("DeleteSecurityGroup", uuid="web2")
    assert (await api("QuerySecurityGroupRule"))["inventories"] == []


BAD_RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"protocol": "TCP", "startPort": 22}, "type", "required"),
    ({"type": "Sideways", "protocol": "TCP", "startPort": 22}, "type", "Sideways"),
    ({"type": "Ingress", "protocol": "SCTP", "startPort": 22}, "protocol", "SCTP"),
    ({"type": "Ingress", "protocol": "TCP"}, "startPort", "needs startPort"),
    ({"type": "Ingress", "protocol": "TCP", "startPort": 70000}, "startPort", "0-65535"),
    (
        {"type": "Ingress", "protocol": "UDP", "startPort": 53, "endPort": 65536},
        "endPort",
        "0-65535",
    ),
    ({"type": "Ingress", "protocol": "TCP", "startPort": -1}, "startPort", "0-65535"),
    ({"type": "Ingress", "protocol": "TCP", "startPort": 90, "endPort": 80}, "endPort", "below"),
    ({"type": "Ingress", "protocol": "TCP", "startPort": "ssh"}, "startPort", "not a port"),
    ({"type": "Ingress", "protocol": "ICMP", "startPort": 8}, "startPort", "no ports"),
    ({"type": "Ingress", "protocol": "ALL", "endPort": 80}, "endPort", "no ports"),
    (
        {"type": "Ingress", "protocol": "TCP", "startPort": 22, "allowedCidr": "10.0.0.0/33"},
        "allowedCidr",
        "CIDR",
    ),
    (
        {"type": "Ingress", "protocol": "TCP", "startPort": 22, "allowedCidr": "banana"},
        "allowedCidr",
        "CIDR",
    ),
    (
        {"type": "Ingress", "protocol": "TCP", "startPort": 22, "allowedCidr": "10.0.0.1/24"},
        "allowedCidr",
        "10.0.0.0/24",
    ),
    (
        {
            "type": "Ingress",
            "protocol": "TCP",
            "startPort": 22,
            "allowedCidr": "10.0.0.0/8",
            "remoteSecurityGroupUuid": "other",
        },
        "allowedCidr",
        "not both",
    ),
    (
        {"type": "Ingress", "protocol": "TCP", "startPort": 22, "colour": "red"},
        "colour",
        "no field",
    ),
]


@pytest.mark.parametrize(("rule", "field", "words"), BAD_RULES)
async def test_rule_validation_names_the_field(
    env: tuple[Api, Node], rule: dict[str, Any], field: str, words: str
) -> None:
    api, _ = env
    await api("CreateSecurityGroup", name="sg")
    await api("CreateSecurityGroup", name="other")
    with pytest.raises(InvalidArgument) as in_list:
        await api(
            "AddSecurityGroupRule",
            securityGroupUuid="sg",
            rules=[{"type": "Ingress", "protocol": "ICMP"}, rule],
        )
    assert in_list.value.field == f"rules[1].{field}"
    assert words in in_list.value.message
    assert in_list.value.code in ("SECURITY_GROUP.INVALID_RULE",)
    # the valid first rule was not kept either
    assert (await group(api, "sg"))["rules"] == []
    if field == "colour":
        return
    # the same as single-rule parameters names the plain field
    with pytest.raises(InvalidArgument) as single:
        await api("AddSecurityGroupRule", securityGroupUuid="sg", **rule)
    assert single.value.field == field


async def test_rule_needs_something_and_duplicates_are_refused(env: tuple[Api, Node]) -> None:
    api, _ = env
    await api("CreateSecurityGroup", name="sg")
    with pytest.raises(InvalidArgument) as empty:
        await api("AddSecurityGroupRule", securityGroupUuid="sg")
    assert empty.value.field == "rules"
    ssh = {"type": "Ingress", "protocol": "TCP", "startPort": 22, "endPort": 22}
    await api("AddSecurityGroupRule", securityGroupUuid="sg", **ssh)
    with pytest.raises(Conflict) as dup:
        await api("AddSecurityGroupRule", securityGroupUuid="sg", **ssh, allowedCidr="0.0.0.0/0")
    assert dup.value.code == "SECURITY_GROUP.DUPLICATE_RULE"
    with pytest.raises(Conflict) as dup_in_list:
        await api(
            "AddSecurityGroupRule",
            securityGroupUuid="sg",
            rules=[{**ssh, "startPort": 80, "endPort": 80}] * 2,
        )
    assert dup_in_list.value.code == "SECURITY_GROUP.DUPLICATE_RULE"
    assert len((await group(api, "sg"))["rules"]) == 1


async def test_remote_group_rules(env: tuple[Api, Node]) -> None:
    api, _ = env
    web = (await api("CreateSecurityGroup", name="web"))["inventory"]
    db = (await api("CreateSecurityGroup", name="db"))["inventory"]
    with pytest.raises(NotFound) as missing:
        await api(
            "AddSecurityGroupRule",
            securityGroupUuid="db",
            rules=[
                {
                    "type": "Ingress",
                    "protocol": "TCP",
                    "startPort": 5432,
                    "remoteSecurityGroupUuid": "nope",
                }
            ],
        )
    assert missing.value.field == "rules[0].remoteSecurityGroupUuid"
    inv = (
        await api(
            "AddSecurityGroupRule",
            securityGroupUuid="db",
            type="Ingress",
            protocol="TCP",
            startPort=5432,
            remoteSecurityGroupUuid="web",
        )
    )["inventory"]
    (rule,) = inv["rules"]
    assert rule["remoteSecurityGroupUuid"] == web["uuid"] and rule["allowedCidr"] is None
    found = await api("QuerySecurityGroup", conditions=["remoteRule.securityGroup.name=db"])
    assert [g["uuid"] for g in found["inventories"]] == [web["uuid"]]
    await consistent(api)
    # deleting the remote group removes rules that name it
    await api("DeleteSecurityGroup", uuid="web")
    assert (await group(api, "db"))["rules"] == []
    assert db["uuid"]


async def test_attach_to_l3_network(env: tuple[Api, Node]) -> None:
    api, _ = env
    zone = (await api("CreateZone", name="z1"))["inventory"]["uuid"]
    l2 = (await api("CreateL2NoVlanNetwork", name="l2", zoneUuid=zone, physicalInterface="eth0"))[
        "inventory"
    ]["uuid"]
    l3 = (await api("CreateL3Network", name="l3", l2NetworkUuid=l2))["inventory"]["uuid"]
    await api("CreateSecurityGroup", name="sg")
    inv = (await api("AttachSecurityGroupToL3Network", securityGroupUuid="sg", l3NetworkUuid="l3"))[
        "inventory"
    ]
    assert inv["attachedL3NetworkUuids"] == [l3]
    with pytest.raises(Conflict) as twice:
        await api("AttachSecurityGroupToL3Network", securityGroupUuid="sg", l3NetworkUuid="l3")
    assert twice.value.code == "SECURITY_GROUP.ALREADY_ATTACHED"
    found = await api("QueryL3Network", conditions=["securityGroup.name=sg"])
    assert [n["uuid"] for n in found["inventories"]] == [l3]
    await api("DetachSecurityGroupFromL3Network", securityGroupUuid="sg", l3NetworkUuid="l3")
    assert (await group(api, "sg"))["attachedL3NetworkUuids"] == []
    with pytest.raises(Conflict) as not_attached:
        await api("DetachSecurityGroupFromL3Network", securityGroupUuid="sg", l3NetworkUuid="l3")
    assert not_attached.value.code == "SECURITY_GROUP.NOT_ATTACHED"
    # deleting the L3 network drops the attachment
    await api("AttachSecurityGroupToL3Network", securityGroupUuid="sg", l3NetworkUuid="l3")
    await api("DeleteL3Network", uuid="l3")
    assert (await group(api, "sg"))["attachedL3NetworkUuids"] == []


async def test_plugin_disabled_removes_only_itself(tmp_path: Path) -> None:
    conf = {"plugins.disabled": "securityGroup,eip"}
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        api = Api(node)
        assert "securityGroup" not in node.services and "eip" not in node.services
        assert node.plugin_errors == {}
        with pytest.raises(NotFound):
            await api("CreateSecurityGroup", name="sg")
        zone = (await api("CreateZone", name="z1"))["inventory"]["uuid"]
        assert zone
        joins = {e for rt in node.resources.types.values() for e in rt.expansions}
        assert "securityGroup" not in joins and "eip" not in joins
        await consistent(api)


async def zcli(node: Node, tmp: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_"))}
    env.update(
        ZMN_ENDPOINT=f"unix:{node.config.unix_path}",
        XDG_CONFIG_HOME=str(tmp / "config"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        PYTHONPATH=str(ROOT),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zcli.main",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_zcli_sg_add_rule(env: tuple[Api, Node], tmp_path: Path) -> None:
    api, node = env
    rc, out, err = await zcli(node, tmp_path, "-o", "json", "sg", "create", "sg1")
    assert rc == 0, err
    rc, out, err = await zcli(
        node,
        tmp_path,
        "-o",
        "json",
        "sg",
        "add-rule",
        "sg1",
        "type=Ingress",
        "protocol=TCP",
        "startPort=22",
        "endPort=22",
        "allowedCidr=0.0.0.0/0",
    )
    assert rc == 0, err
    rules = json.loads(out)["rules"]  # zcli prints the inventory
    assert [(r["protocol"], r["startPort"], r["endPort"]) for r in rules] == [("TCP", 22, 22)]
    rc, out, err = await zcli(
        node, tmp_path, "sg", "add-rule", "sg1", "type=Ingress", "protocol=TCP", "startPort=99999"
    )
    assert rc == 2
    assert "startPort" in err
    rc, out, err = await zcli(node, tmp_path, "eip", "create", "e1", "vipUuid=nope")
    assert rc == 3, err
    assert len((await group(api, "sg1"))["rules"]) == 1
