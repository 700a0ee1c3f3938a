"""Security groups on VMs: rules pushed to the simulator host on create, start, migrate and
every change, cleared on stop, destroy and expunge; remote groups carry member addresses;
a failed push rolls the VM back; the NIC join; and VMs without the plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_eip_vm import build_cloud, consistent, create_vm
from tests.support.inproc import Api, running_node
from zmn.api.errors import Conflict, ZmnError
from zmn.core.node import Node

SSH = {"type": "Ingress", "protocol": "TCP", "startPort": 22, "endPort": 22}


async def host_rules(api: Api, host: str) -> dict[str, list[dict[str, Any]]]:
    rules: dict[str, list[dict[str, Any]]] = (await api("GetSimulatorHostState", uuid=host))[
        "host"
    ]["rules"]
    return rules


def ports(rules: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    return sorted((r["type"], r["protocol"], r["startPort"]) for r in rules)


async def vm_of(api: Api, name: str) -> dict[str, Any]:
    inv: dict[str, Any] = (await api("QueryVmInstance", conditions=[f"name={name}"]))[
        "inventories"
    ][0]
    return inv


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[Api, Node, dict[str, str]]]:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        u = await build_cloud(api, hosts=2)
        yield api, node, u
        await consistent(api)


async def test_rules_follow_the_vm_lifecycle(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, _, u = cloud
    await api("CreateSecurityGroup", name="web")
    await api("AddSecurityGroupRule", securityGroupUuid="web", **SSH)
    await api("AttachSecurityGroupToL3Network", securityGroupUuid="web", l3NetworkUuid="private")

    # create: the NIC joins the group attached to its L3, its rules go to the host
    vm = await create_vm(api, "web-1", hostUuid="h1")
    (nic,) = vm["vmNics"]
    assert vm["hostUuid"] == u["host1"]
    on_host = await host_rules(api, u["host1"])
    assert list(on_host) == [nic["uuid"]]
    assert ports(on_host[nic["uuid"]]) == [("Ingress", "TCP", 22)]
    assert on_host[nic["uuid"]][0]["allowedCidr"] == "0.0.0.0/0"
    found = await api("QueryVmInstance", conditions=["vmNics.securityGroup.name=web"])
    assert [v["uuid"] for v in found["inventories"]] == [vm["uuid"]]
    found = await api("QuerySecurityGroup", conditions=["vmNic.vmInstance.name=web-1"])
    assert [g["name"] for g in found["inventories"]] == ["web"]
    await consistent(api)

    # a rule change is pushed at once
    await api(
        "AddSecurityGroupRule",
        securityGroupUuid="web",
        rules=[{"type": "Ingress", "protocol": "TCP", "startPort": 80, "endPort": 443}],
    )
    on_host = await host_rules(api, u["host1"])
    assert ports(on_host[nic["uuid"]]) == [("Ingress", "TCP", 22), ("Ingress", "TCP", 80)]
    rule22 = next(r["uuid"] for r in on_host[nic["uuid"]] if r["startPort"] == 22)
    await api("DeleteSecurityGroupRule", ruleUuids=[rule22])
    assert ports((await host_rules(api, u["host1"]))[nic["uuid"]]) == [("Ingress", "TCP", 80)]

    # a disabled group applies nothing; enabled again, its rules come back
    await api("ChangeSecurityGroupState", uuid="web", stateEvent="disable")
    assert await host_rules(api, u["host1"]) == {}
    await api("ChangeSecurityGroupState", uuid="web", stateEvent="enable")
    assert list(await host_rules(api, u["host1"])) == [nic["uuid"]]

    # stop clears, start pushes again
    await api("StopVmInstance", uuid="web-1")
    assert await host_rules(api, u["host1"]) == {}
    await api("StartVmInstance", uuid="web-1", hostUuid="h2")
    assert await host_rules(api, u["host1"]) == {}
    assert ports((await host_rules(api, u["host2"]))[nic["uuid"]]) == [("Ingress", "TCP", 80)]

    # migrate: the rules move with the VM
    await api("MigrateVm", vmInstanceUuid="web-1", hostUuid="h1")
    assert await host_rules(api, u["host2"]) == {}
    assert list(await host_rules(api, u["host1"])) == [nic["uuid"]]
    await consistent(api)

    # expunge: rules gone from the host, membership gone
    await api("DestroyVmInstance", uuid="web-1")
    assert await host_rules(api, u["host1"]) == {}
    assert await host_rules(api, u["host2"]) == {}
    found = await api("QuerySecurityGroup", conditions=["vmNic.uuid!=null"])
    assert found["inventories"] == []
    await consistent(api)


async def test_nic_membership_and_remote_groups(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, _, u = cloud
    web = await create_vm(api, "web-1", hostUuid="h1")
    db = await create_vm(api, "db-1", hostUuid="h2")
    web_nic, db_nic = web["vmNics"][0], db["vmNics"][0]
    # no group, nothing on the hosts
    assert await host_rules(api, u["host1"]) == {}
    await api("CreateSecurityGroup", name="web")
    await api("CreateSecurityGroup", name="db")
    await api(
        "AddSecurityGroupRule",
        securityGroupUuid="db",
        type="Ingress",
        protocol="TCP",
        startPort=5432,
        remoteSecurityGroupUuid="web",
    )
    await api("AddVmNicToSecurityGroup", securityGroupUuid="db", vmNicUuids=[db_nic["uuid"]])
    (rule,) = (await host_rules(api, u["host2"]))[db_nic["uuid"]]
    assert rule["remoteSecurityGroupUuid"] and rule["remoteIps"] == []
    # web-1 joins "web": db-1's rule now allows its address
    inv = (
        await api("AddVmNicToSecurityGroup", securityGroupUuid="web", vmNicUuids=[web_nic["uuid"]])
    )["inventory"]
    assert inv["name"] == "web"
    (rule,) = (await host_rules(api, u["host2"]))[db_nic["uuid"]]
    assert rule["remoteIps"] == [web_nic["ip"]]
    # "web" has no rules, so web-1 has none on its host
    assert await host_rules(api, u["host1"]) == {}
    # adding again is a no-op
    await api("AddVmNicToSecurityGroup", securityGroupUuid="web", vmNicUuids=[web_nic["uuid"]])
    found = await api("QueryVmNic", conditions=["securityGroup.name=web"])
    assert [n["uuid"] for n in found["inventories"]] == [web_nic["uuid"]]
    await consistent(api)

    # leaving "web" takes the address out of db-1's rule
    await api("DeleteVmNicFromSecurityGroup", securityGroupUuid="web", vmNicUuids=[web_nic["uuid"]])
    (rule,) = (await host_rules(api, u["host2"]))[db_nic["uuid"]]
    assert rule["remoteIps"] == []
    with pytest.raises(Conflict) as not_in:
        await api(
            "DeleteVmNicFromSecurityGroup", securityGroupUuid="web", vmNicUuids=[web_nic["uuid"]]
        )
    assert not_in.value.code == "SECURITY_GROUP.NIC_NOT_IN_GROUP"
    assert not_in.value.field == "vmNicUuids"

    # expunging a member of a remote group updates the rules that name the group
    await api("AddVmNicToSecurityGroup", securityGroupUuid="web", vmNicUuids=[web_nic["uuid"]])
    assert (await host_rules(api, u["host2"]))[db_nic["uuid"]][0]["remoteIps"] == [web_nic["ip"]]
    await api("DestroyVmInstance", uuid="web-1")
    assert (await host_rules(api, u["host2"]))[db_nic["uuid"]][0]["remoteIps"] == []
    await consistent(api)

    # deleting the group takes its NICs out and clears them on their hosts
    await api("DeleteSecurityGroup", uuid="db")
    assert await host_rules(api, u["host2"]) == {}
    assert (await api("QueryVmNic", conditions=["securityGroup.name=db"]))["inventories"] == []


async def test_nic_detach_leaves_its_groups(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, _, u = cloud
    await api("CreateSecurityGroup", name="sg")
    await api("AddSecurityGroupRule", securityGroupUuid="sg", **SSH)
    await create_vm(api, "a", hostUuid="h1")
    vm = (await api("AttachL3NetworkToVm", vmInstanceUuid="a", l3NetworkUuid="public"))["inventory"]
    extra = next(n for n in vm["vmNics"] if n["l3NetworkUuid"] == u["public"])
    await api("AddVmNicToSecurityGroup", securityGroupUuid="sg", vmNicUuids=[extra["uuid"]])
    assert list(await host_rules(api, u["host1"])) == [extra["uuid"]]
    await api("DetachL3NetworkFromVm", vmNicUuid=extra["uuid"])
    assert await host_rules(api, u["host1"]) == {}
    assert (await api("QueryVmNic", conditions=["securityGroup.name=sg"]))["inventories"] == []
    await consistent(api)


async def test_failed_push_rolls_the_create_back(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, node, u = cloud
    await api("CreateSecurityGroup", name="sg")
    await api("AddSecurityGroupRule", securityGroupUuid="sg", **SSH)
    await api("AttachSecurityGroupToL3Network", securityGroupUuid="sg", l3NetworkUuid="private")
    simulator = node.services["host"].simulator  # type: ignore[attr-defined]
    simulator.inject("applySecurityGroupRules", "firewall down", host=u["host1"])
    with pytest.raises(ZmnError) as failed:
        await create_vm(api, "web-1", hostUuid="h1")
    assert "firewall down" in failed.value.message
    simulator.clear()
    assert (await api("QueryVmInstance"))["inventories"] == []
    assert (await api("QueryVmNic"))["inventories"] == []
    assert (await api("QueryUsedIp"))["inventories"] == []
    assert await host_rules(api, u["host1"]) == {}
    assert (await api("QuerySecurityGroup", conditions=["vmNic.uuid!=null"]))["inventories"] == []
    await consistent(api)
    # and with the host working again, the same create succeeds
    vm = await create_vm(api, "web-1", hostUuid="h1")
    assert list(await host_rules(api, u["host1"])) == [vm["vmNics"][0]["uuid"]]


async def test_vms_work_with_the_plugin_disabled(tmp_path: Path) -> None:
    conf = {"plugins.disabled": "securityGroup"}
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        api = Api(node)
        assert "securityGroup" not in node.services and "vm" in node.services
        assert node.plugin_errors == {}
        u = await build_cloud(api)
        vm = await create_vm(api, "web-1")
        assert (await vm_of(api, "web-1"))["state"] == "Running"
        nic = vm["vmNics"][0]
        assert nic["ip"]
        assert "securityGroup" not in node.resources.get("VmNic").expansions
        await api("StopVmInstance", uuid="web-1")
        await api("StartVmInstance", uuid="web-1")
        await api("DestroyVmInstance", uuid="web-1")
        assert (await api("QueryVmInstance"))["inventories"] == []
        assert await host_rules(api, u["host1"]) == {}
        await consistent(api)
