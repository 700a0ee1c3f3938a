"""EIPs on VM NICs: attach/detach with the guest address, the L3 and VM-state rules, joins
from VMs and NICs, and EIPs detached when their NIC goes (NIC detach, expunge)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from zmn.api.errors import Conflict, InvalidArgument, InvalidState
from zmn.core.node import Node

GiB = 1024**3


async def consistent(api: Api) -> None:
    assert (await api("CheckConsistency"))["violations"] == []


async def build_cloud(api: Api, hosts: int = 1) -> dict[str, str]:
    """A zone with simulator hosts, storage, an image, a private and a public L3 network."""
    u: dict[str, str] = {}

    async def make(key: str, api_name: str, **args: Any) -> None:
        u[key] = (await api(api_name, **args))["inventory"]["uuid"]

    await make("zone", "CreateZone", name="z1")
    await make("cluster", "CreateCluster", name="c1", zoneUuid="z1", hypervisorType="Simulator")
    for i in range(1, hosts + 1):
        await make(
            f"host{i}",
            "AddSimulatorHost",
            name=f"h{i}",
            managementIp=f"10.0.0.{i}",
            clusterUuid="c1",
            cpuCapacity=32,
            memoryCapacity=64 * GiB,
        )
    await make(
        "ps",
        "AddSimulatorPrimaryStorage",
        name="ps1",
        zoneUuid="z1",
        url="/ps",
        totalCapacity=1024 * GiB,
    )
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid="ps1", clusterUuid="c1")
    await make("bs", "AddSimulatorBackupStorage", name="bs1", url="/bs", totalCapacity=1024 * GiB)
    await api("AttachBackupStorageToZone", backupStorageUuid="bs1", zoneUuid="z1")
    await make(
        "image",
        "AddImage",
        name="img",
        url="http://images.example/cirros.qcow2",
        format="qcow2",
        backupStorageUuids=["bs1"],
    )
    await make("offering", "CreateInstanceOffering", name="small", cpuNum=1, memorySize=GiB)
    await make("l2", "CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth0")
    await api("AttachL2NetworkToCluster", l2NetworkUuid="l2", clusterUuid="c1")
    await make("private", "CreateL3Network", name="private", l2NetworkUuid="l2")
    await api(
        "AddIpRange",
        name="private-range",
        l3NetworkUuid="private",
        startIp="10.1.0.10",
        endIp="10.1.0.50",
        netmask="255.255.255.0",
        gateway="10.1.0.1",
    )
    await make("public", "CreateL3Network", name="public", l2NetworkUuid="l2", category="Public")
    await api(
        "AddIpRange",
        name="public-range",
        l3NetworkUuid="public",
        startIp="192.168.100.10",
        endIp="192.168.100.50",
        netmask="255.255.255.0",
        gateway="192.168.100.1",
    )
    return u


async def create_vm(api: Api, name: str, *l3s: str, **extra: Any) -> dict[str, Any]:
    inv: dict[str, Any] = (
        await api(
            "CreateVmInstance",
            name=name,
            imageUuid="img",
            instanceOfferingUuid="small",
            l3NetworkUuids=list(l3s or ["private"]),
            **extra,
        )
    )["inventory"]
    return inv


async def eip_of(api: Api, name: str) -> dict[str, Any]:
    inv: dict[str, Any] = (await api("QueryEip", conditions=[f"name={name}"]))["inventories"][0]
    return inv


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[Api, Node, dict[str, str]]]:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        u = await build_cloud(api)
        yield api, node, u
        await consistent(api)


async def test_eip_attach_detach_on_a_vm_nic(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, _, _ = cloud
    vm = await create_vm(api, "web-1")
    (nic,) = vm["vmNics"]
    vip = (await api("CreateVip", name="vip1", l3NetworkUuid="public"))["inventory"]
    eip = (await api("CreateEip", name="eip1", vipUuid="vip1", vmNicUuid=nic["uuid"]))["inventory"]
    assert eip["vmNicUuid"] == nic["uuid"]
    assert eip["guestIp"] == nic["ip"] and eip["vipIp"] == vip["ip"]
    await consistent(api)

    # the joins: VM -> NICs -> EIP, NIC -> EIP, EIP -> VIP
    found = await api("QueryVmInstance", conditions=[f"vmNics.eip.vipIp={vip['ip']}"])
    assert [v["uuid"] for v in found["inventories"]] == [vm["uuid"]]
    found = await api("QueryVmInstance", conditions=["vmNics.eip.vip.name=vip1"])
    assert [v["uuid"] for v in found["inventories"]] == [vm["uuid"]]
    found = await api("QueryVmNic", conditions=["eip.name=eip1"])
    assert [n["uuid"] for n in found["inventories"]] == [nic["uuid"]]
    found = await api("QueryEip", conditions=["vmNic.vmInstance.name=web-1"])
    assert [e["uuid"] for e in found["inventories"]] == [eip["uuid"]]

    # attached twice, detached, detached twice
    with pytest.raises(Conflict) as twice:
        await api("AttachEip", eipUuid="eip1", vmNicUuid=nic["uuid"])
    assert twice.value.code == "EIP.ALREADY_ATTACHED"
    detached = (await api("DetachEip", eipUuid="eip1"))["inventory"]
    assert detached["vmNicUuid"] is None and detached["guestIp"] is None
    assert (await api("QueryVmInstance", conditions=[f"vmNics.eip.vipIp={vip['ip']}"]))[
        "inventories"
    ] == []
    with pytest.raises(Conflict):
        await api("DetachEip", eipUuid="eip1")
    await consistent(api)

    # attached again, to a stopped VM (allowed)
    await api("StopVmInstance", uuid="web-1")
    again = (await api("AttachEip", eipUuid="eip1", vmNicUuid=nic["uuid"]))["inventory"]
    assert again["guestIp"] == nic["ip"]
    await consistent(api)


async def test_eip_nic_must_be_on_another_l3(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, _, u = cloud
    vm = await create_vm(api, "edge", "private", "public")
    public_nic = next(n for n in vm["vmNics"] if n["l3NetworkUuid"] == u["public"])
    private_nic = next(n for n in vm["vmNics"] if n["l3NetworkUuid"] == u["private"])
    await api("CreateVip", name="vip1", l3NetworkUuid="public")
    with pytest.raises(InvalidArgument) as same:
        await api("CreateEip", name="eip1", vipUuid="vip1", vmNicUuid=public_nic["uuid"])
    assert same.value.code == "EIP.SAME_L3" and same.value.field == "vmNicUuid"
    assert "same" in same.value.message
    # nothing was made, the VIP is still free
    assert (await api("QueryEip"))["inventories"] == []
    vip = (await api("QueryVip", conditions=["name=vip1"]))["inventories"][0]
    assert vip["useFor"] is None
    await api("CreateEip", name="eip1", vipUuid="vip1")
    with pytest.raises(InvalidArgument):
        await api("AttachEip", eipUuid="eip1", vmNicUuid=public_nic["uuid"])
    await api("AttachEip", eipUuid="eip1", vmNicUuid=private_nic["uuid"])
    # a NIC may hold EIPs of several VIPs, each VIP serving one EIP
    await api("CreateVip", name="vip2", l3NetworkUuid="public")
    await api("CreateEip", name="eip2", vipUuid="vip2", vmNicUuid=private_nic["uuid"])
    found = await api("QueryEip", conditions=[f"vmNicUuid={private_nic['uuid']}"])
    assert sorted(e["name"] for e in found["inventories"]) == ["eip1", "eip2"]


async def test_eip_refused_for_a_vm_in_a_state_that_cannot_take_it(
    cloud: tuple[Api, Node, dict[str, str]],
) -> None:
    api, _, _ = cloud
    await api("UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Delay")
    vm = await create_vm(api, "doomed")
    (nic,) = vm["vmNics"]
    await api("CreateVip", name="vip1", l3NetworkUuid="public")
    await api("DestroyVmInstance", uuid="doomed")
    with pytest.raises(InvalidState) as refused:
        await api("CreateEip", name="eip1", vipUuid="vip1", vmNicUuid=nic["uuid"])
    assert refused.value.code == "EIP.VM_INVALID_STATE"
    assert refused.value.details["state"] == "Destroyed"
    assert "Destroyed" in refused.value.message
    assert (await api("QueryEip"))["inventories"] == []
    await api("RecoverVmInstance", uuid="doomed")
    eip = (await api("CreateEip", name="eip1", vipUuid="vip1", vmNicUuid=nic["uuid"]))["inventory"]
    assert eip["vmNicUuid"] == nic["uuid"]


async def test_eip_detached_when_its_nic_goes(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, _, _ = cloud
    vm = await create_vm(api, "a")
    (nic,) = vm["vmNics"]
    await api("CreateVip", name="vip1", l3NetworkUuid="public")
    await api("CreateEip", name="eip1", vipUuid="vip1", vmNicUuid=nic["uuid"])
    # a second NIC, attached then detached with its EIP
    vm = (await api("AttachL3NetworkToVm", vmInstanceUuid="a", l3NetworkUuid="public"))["inventory"]
    await api("CreateVip", name="vip2", l3NetworkUuid="public")
    await api("CreateEip", name="eip2", vipUuid="vip2", vmNicUuid=nic["uuid"])
    extra = next(n for n in vm["vmNics"] if n["uuid"] != nic["uuid"])
    await api("CreateVip", name="vip3", l3NetworkUuid="private")
    await api("CreateEip", name="eip3", vipUuid="vip3", vmNicUuid=extra["uuid"])
    await api("DetachL3NetworkFromVm", vmNicUuid=extra["uuid"])
    eip3 = await eip_of(api, "eip3")
    assert eip3["vmNicUuid"] is None and eip3["guestIp"] is None
    await consistent(api)
    # expunge (Direct policy) detaches the rest; the EIPs and VIPs stay
    await api("DestroyVmInstance", uuid="a")
    assert (await api("QueryVmNic"))["inventories"] == []
    for name in ("eip1", "eip2"):
        eip = await eip_of(api, name)
        assert eip["vmNicUuid"] is None and eip["guestIp"] is None
    assert len((await api("QueryVip"))["inventories"]) == 3
    await consistent(api)
    # and they can serve another VM
    b = await create_vm(api, "b")
    await api("AttachEip", eipUuid="eip1", vmNicUuid=b["vmNics"][0]["uuid"])
    await consistent(api)


async def test_vm_ip_accounting_with_vips(cloud: tuple[Api, Node, dict[str, str]]) -> None:
    api, _, u = cloud
    vip = (await api("CreateVip", name="vip1", l3NetworkUuid="private", requiredIp="10.1.0.10"))[
        "inventory"
    ]
    vm = await create_vm(api, "x")
    assert vm["vmNics"][0]["ip"] != vip["ip"]
    ips = (await api("QueryUsedIp", conditions=[f"l3NetworkUuid={u['private']}"]))["inventories"]
    assert sorted((i["ip"], i["usedFor"]) for i in ips) == sorted(
        [(vip["ip"], "Vip"), (vm["vmNics"][0]["ip"], "Vm")]
    )
    await api("DeleteVip", uuid="vip1")
    ips = (await api("QueryUsedIp", conditions=[f"l3NetworkUuid={u['private']}"]))["inventories"]
    assert [i["usedFor"] for i in ips] == ["Vm"]
