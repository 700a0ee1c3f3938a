"""Node information for admins (issue 16, item 7).

``GetManagementNodeStatus`` and ``GetManagementNodeStats`` show database URLs, paths, pids,
endpoints and per-API counts to admins only; a normal account gets the version, uptime and
node-wide latency. An address another tenant holds is refused with ``L3.IP_IN_USE`` and
nothing about its holder (as ZStack: the address is taken, not by whom).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.inproc import Api, running_node
from zmn.api.errors import Conflict


async def login(api: Api, name: str) -> str:
    await api("CreateAccount", name=name, password=f"{name}-password")
    reply = await api("LogInByAccount", accountName=name, password=f"{name}-password")
    return str(reply["inventory"]["uuid"])


async def test_status_and_stats_hide_node_internals_from_tenants(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        tenant = await login(api, "tenant")
        await api("CreateZone", name="secret-zone-call")
        admin_status = await api("GetManagementNodeStatus")
        assert admin_status["pid"] and admin_status["database"]["url"]
        admin_stats = await api("GetManagementNodeStats")
        assert "CreateZone" in admin_stats["apis"]

        status, _ = await node.execute("GetManagementNodeStatus", {}, session=tenant)
        assert status["adminView"] is False and status["version"] == node.version
        assert set(status) == {"version", "uptimeSeconds", "stopping", "adminView"}
        stats, _ = await node.execute("GetManagementNodeStats", {}, session=tenant)
        assert stats["adminView"] is False and "p95ms" in stats
        text = json.dumps([status, stats])
        for leak in ("CreateZone", str(node.config.home), node.db.url, "pid", "endpoints"):
            assert leak not in text, leak


async def test_address_taken_by_another_tenant_reveals_no_holder(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        await api("CreateZone", name="z1")
        await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth0")
        l3 = await api("CreateL3Network", name="pub", l2NetworkUuid="l2", category="Public")
        await api("AddIpRange", name="r", l3NetworkUuid="pub", startIp="10.9.0.10",
                  endIp="10.9.0.20", netmask="255.255.255.0", gateway="10.9.0.1")  # fmt: skip
        alice, bob = await login(api, "alice"), await login(api, "bob")
        held, _ = await node.execute(
            "CreateVip",
            {"name": "alice-vip", "l3NetworkUuid": l3["inventory"]["uuid"],
             "requiredIp": "10.9.0.15"},
            session=alice,
        )  # fmt: skip
        with pytest.raises(Conflict) as info:
            await node.execute(
                "CreateVip",
                {"name": "b", "l3NetworkUuid": l3["inventory"]["uuid"], "requiredIp": "10.9.0.15"},
                session=bob,
            )
        assert info.value.code == "L3.IP_IN_USE"
        said = json.dumps(info.value.to_wire())
        alice_account = (await api("QueryAccount", conditions=["name=alice"]))["inventories"][0]
        for secret in (held["inventory"]["uuid"], "alice", alice_account["uuid"]):
            assert secret not in said, said
