"""Every validation of the infrastructure APIs refuses with a stable code naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.inproc import Api
from zmn.api.errors import Conflict, InvalidArgument, InvalidState, NotFound, ZmnError

GiB = 1024**3
N = 1024**4


@pytest.fixture
async def infra(node_api: Api) -> Api:
    """Two zones; z1 has a cluster, storage and networks, z2 has a cluster."""
    api = node_api
    await api("CreateZone", name="z1")
    await api("CreateZone", name="z2")
    await api("CreateCluster", name="c1", zoneUuid="z1", hypervisorType="Simulator")
    await api("CreateCluster", name="c2", zoneUuid="z2", hypervisorType="Simulator")
    await api("CreateCluster", name="kvm1", zoneUuid="z1", hypervisorType="KVM")
    await api(
        "AddSimulatorHost",
        name="h1",
        managementIp="10.0.0.11",
        clusterUuid="c1",
        cpuCapacity=8,
        memoryCapacity=8 * GiB,
    )
    await api(
        "AddSimulatorPrimaryStorage", name="ps1", zoneUuid="z1", url="/sim/ps", totalCapacity=N
    )
    await api("AddSimulatorBackupStorage", name="bs1", url="/sim/bs", totalCapacity=N)
    await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth0")
    await api("CreateL3Network", name="l3", l2NetworkUuid="l2")
    await api(
        "AddIpRange",
        name="r1",
        l3NetworkUuid="l3",
        startIp="10.0.0.100",
        endIp="10.0.0.200",
        netmask="255.255.255.0",
        gateway="10.0.0.1",
    )
    return api


async def refused(
    api: Api, kind: type[ZmnError], code: str, field: str, api_name: str, **args: Any
) -> ZmnError:
    with pytest.raises(kind) as info:
        await api(api_name, **args)
    err = info.value
    assert (err.code, err.field) == (code, field), (
        f"{api_name}: {err.code} {err.details} {err.message}"
    )
    if kind is not NotFound:  # the core's not-found message names the resource, details the field
        assert field in err.message, err.message
    return err


async def test_cluster_and_host_validation(infra: Api) -> None:
    err = await refused(
        infra,
        InvalidArgument,
        "ARG.INVALID",
        "hypervisorType",
        "CreateCluster",
        name="x",
        zoneUuid="z1",
        hypervisorType="Xen",
    )
    assert "Simulator" in err.message and "KVM" in err.message
    await refused(
        infra,
        NotFound,
        "ZONE.NOT_FOUND",
        "zoneUuid",
        "CreateCluster",
        name="x",
        zoneUuid="nowhere",
        hypervisorType="KVM",
    )
    await refused(
        infra,
        Conflict,
        "CLUSTER.DUPLICATE_NAME",
        "name",
        "CreateCluster",
        name="c1",
        zoneUuid="z1",
        hypervisorType="KVM",
    )

    host = {
        "name": "h2",
        "managementIp": "10.0.0.12",
        "clusterUuid": "c1",
        "cpuCapacity": 4,
        "memoryCapacity": GiB,
    }
    await refused(
        infra,
        Conflict,
        "HOST.DUPLICATE_IP",
        "managementIp",
        "AddSimulatorHost",
        **{**host, "managementIp": "10.0.0.11"},
    )
    await refused(
        infra, Conflict, "HOST.DUPLICATE_NAME", "name", "AddSimulatorHost", **{**host, "name": "h1"}
    )
    await refused(
        infra,
        InvalidArgument,
        "HOST.INVALID_MANAGEMENT_IP",
        "managementIp",
        "AddSimulatorHost",
        **{**host, "managementIp": "10.0.0.300"},
    )
    await refused(
        infra,
        InvalidArgument,
        "HOST.INVALID_CAPACITY",
        "cpuCapacity",
        "AddSimulatorHost",
        **{**host, "cpuCapacity": 0},
    )
    await refused(
        infra,
        InvalidArgument,
        "HOST.INVALID_CAPACITY",
        "memoryCapacity",
        "AddSimulatorHost",
        **{**host, "memoryCapacity": -1},
    )
    await refused(
        infra,
        InvalidArgument,
        "ARG.INVALID",
        "cpuCapacity",
        "AddSimulatorHost",
        **{**host, "cpuCapacity": "lots"},
    )
    await refused(
        infra,
        InvalidArgument,
        "HOST.HYPERVISOR_MISMATCH",
        "clusterUuid",
        "AddSimulatorHost",
        **{**host, "clusterUuid": "kvm1"},
    )
    await refused(
        infra,
        NotFound,
        "CLUSTER.NOT_FOUND",
        "clusterUuid",
        "AddSimulatorHost",
        **{**host, "clusterUuid": "nope"},
    )
    await refused(
        infra,
        InvalidArgument,
        "ARG.INVALID",
        "stateEvent",
        "ChangeHostState",
        uuid="h1",
        stateEvent="explode",
    )
    # a host name works with a host name as management address too
    inv = (await infra("AddSimulatorHost", **{**host, "managementIp": "host12.example"}))[
        "inventory"
    ]
    assert inv["status"] == "Connected"
    assert (await infra("QueryHost", count=True))["total"] == 2


async def test_storage_validation(infra: Api) -> None:
    ps = {"name": "ps2", "zoneUuid": "z1", "url": "/sim/ps2"}
    bs = {"name": "bs2", "url": "/sim/bs2"}
    for api_name, args in (("AddSimulatorPrimaryStorage", ps), ("AddSimulatorBackupStorage", bs)):
        await refused(
            infra,
            InvalidArgument,
            "STORAGE.INVALID_CAPACITY",
            "totalCapacity",
            api_name,
            **args,
            totalCapacity=-1,
        )
        await refused(
            infra,
            InvalidArgument,
            "STORAGE.INVALID_CAPACITY",
            "availableCapacity",
            api_name,
            **args,
            totalCapacity=10,
            availableCapacity=-1,
        )
        await refused(
            infra,
            InvalidArgument,
            "STORAGE.INVALID_CAPACITY",
            "availableCapacity",
            api_name,
            **args,
            totalCapacity=10,
            availableCapacity=11,
        )
        await refused(
            infra,
            InvalidArgument,
            "ARG.INVALID",
            "url",
            api_name,
            **{**args, "url": ""},
            totalCapacity=10,
        )
    # zones must match; attaching twice is a conflict
    await refused(
        infra,
        InvalidArgument,
        "PRIMARY_STORAGE.ZONE_MISMATCH",
        "clusterUuid",
        "AttachPrimaryStorageToCluster",
        primaryStorageUuid="ps1",
        clusterUuid="c2",
    )
    await infra("AttachPrimaryStorageToCluster", primaryStorageUuid="ps1", clusterUuid="c1")
    await refused(
        infra,
        Conflict,
        "PRIMARY_STORAGE.ALREADY_ATTACHED",
        "clusterUuid",
        "AttachPrimaryStorageToCluster",
        primaryStorageUuid="ps1",
        clusterUuid="c1",
    )
    await refused(
        infra,
        Conflict,
        "PRIMARY_STORAGE.NOT_ATTACHED",
        "clusterUuid",
        "DetachPrimaryStorageFromCluster",
        primaryStorageUuid="ps1",
        clusterUuid="kvm1",
    )
    await infra("AttachBackupStorageToZone", backupStorageUuid="bs1", zoneUuid="z1")
    await refused(
        infra,
        Conflict,
        "BACKUP_STORAGE.ALREADY_ATTACHED",
        "zoneUuid",
        "AttachBackupStorageToZone",
        backupStorageUuid="bs1",
        zoneUuid="z1",
    )
    await refused(
        infra,
        NotFound,
        "BACKUP_STORAGE.NOT_FOUND",
        "backupStorageUuid",
        "AttachBackupStorageToZone",
        backupStorageUuid="bsX",
        zoneUuid="z1",
    )
    # a primary storage in maintenance cannot be attached
    await infra("ChangePrimaryStorageState", uuid="ps1", stateEvent="maintain")
    await infra("DetachPrimaryStorageFromCluster", primaryStorageUuid="ps1", clusterUuid="c1")
    with pytest.raises(InvalidState) as state:
        await infra("AttachPrimaryStorageToCluster", primaryStorageUuid="ps1", clusterUuid="c1")
    assert (
        state.value.code == "PRIMARY_STORAGE.INVALID_STATE" and "Maintenance" in state.value.message
    )


async def test_image_validation(infra: Api) -> None:
    img = {
        "name": "img",
        "url": "http://x/a.qcow2",
        "format": "qcow2",
        "backupStorageUuids": ["bs1"],
    }
    await refused(
        infra,
        InvalidArgument,
        "IMAGE.INVALID_URL",
        "url",
        "AddImage",
        **{**img, "url": "gopher://x/a"},
    )
    await refused(
        infra,
        InvalidArgument,
        "IMAGE.FORMAT_MISMATCH",
        "mediaType",
        "AddImage",
        **{**img, "format": "iso"},
    )
    await refused(
        infra,
        InvalidArgument,
        "IMAGE.FORMAT_MISMATCH",
        "mediaType",
        "AddImage",
        **img,
        mediaType="ISO",
    )
    await refused(
        infra, InvalidArgument, "ARG.INVALID", "format", "AddImage", **{**img, "format": "vmdk"}
    )
    await refused(
        infra, InvalidArgument, "ARG.INVALID", "platform", "AddImage", **img, platform="BeOS"
    )
    await refused(
        infra,
        NotFound,
        "BACKUP_STORAGE.NOT_FOUND",
        "backupStorageUuids",
        "AddImage",
        **{**img, "backupStorageUuids": ["bs1", "nope"]},
    )
    await refused(
        infra,
        InvalidArgument,
        "TAG.NO_PATTERN",
        "tag",
        "AddImage",
        **img,
        systemTags=["color::red"],
    )
    await infra("AddSimulatorBackupStorage", name="tiny", url="/sim/tiny", totalCapacity=10)
    await refused(
        infra,
        Conflict,
        "BACKUP_STORAGE.INSUFFICIENT_CAPACITY",
        "backupStorageUuids",
        "AddImage",
        **{**img, "backupStorageUuids": ["bs1", "tiny"]},
    )
    await infra("ChangeBackupStorageState", uuid="bs1", stateEvent="disable")
    await refused(
        infra, InvalidState, "BACKUP_STORAGE.INVALID_STATE", "backupStorageUuids", "AddImage", **img
    )
    # nothing of the refused adds was kept, and no capacity was taken
    assert (await infra("QueryImage", count=True))["total"] == 0
    bs = (await infra("QueryBackupStorage", conditions=["name=bs1"]))["inventories"][0]
    assert bs["availableCapacity"] == N
    await infra("ChangeBackupStorageState", uuid="bs1", stateEvent="enable")
    inv = (await infra("AddImage", **img, systemTags=["bootMode::UEFI"]))["inventory"]
    await refused(infra, Conflict, "IMAGE.DUPLICATE_NAME", "name", "AddImage", **img)
    await infra("DeleteImage", uuid=inv["uuid"])
    bs = (await infra("QueryBackupStorage", conditions=["name=bs1"]))["inventories"][0]
    assert bs["availableCapacity"] == N  # given back


async def test_offering_validation(infra: Api) -> None:
    await refused(
        infra,
        InvalidArgument,
        "INSTANCE_OFFERING.INVALID_SIZE",
        "cpuNum",
        "CreateInstanceOffering",
        name="o",
        cpuNum=0,
        memorySize=GiB,
    )
    await refused(
        infra,
        InvalidArgument,
        "INSTANCE_OFFERING.INVALID_SIZE",
        "memorySize",
        "CreateInstanceOffering",
        name="o",
        cpuNum=1,
        memorySize=1024,
    )
    await refused(
        infra,
        InvalidArgument,
        "ARG.INVALID",
        "allocatorStrategy",
        "CreateInstanceOffering",
        name="o",
        cpuNum=1,
        memorySize=GiB,
        allocatorStrategy="Random",
    )
    await refused(
        infra,
        InvalidArgument,
        "DISK_OFFERING.INVALID_SIZE",
        "diskSize",
        "CreateDiskOffering",
        name="d",
        diskSize=0,
    )
    await refused(infra, InvalidArgument, "ARG.MISSING", "diskSize", "CreateDiskOffering", name="d")
    await infra("CreateDiskOffering", name="d", diskSize=GiB)
    await refused(
        infra,
        Conflict,
        "DISK_OFFERING.DUPLICATE_NAME",
        "name",
        "CreateDiskOffering",
        name="d",
        diskSize=GiB,
    )


async def test_network_validation(infra: Api) -> None:
    for vlan in (0, 4095, -3):
        await refused(
            infra,
            InvalidArgument,
            "L2_NETWORK.INVALID_VLAN",
            "vlan",
            "CreateL2VlanNetwork",
            name="v",
            zoneUuid="z1",
            physicalInterface="eth0",
            vlan=vlan,
        )
    await refused(
        infra,
        InvalidArgument,
        "L2_NETWORK.INVALID_INTERFACE",
        "physicalInterface",
        "CreateL2NoVlanNetwork",
        name="n",
        zoneUuid="z1",
        physicalInterface="eth 0",
    )
    await infra(
        "CreateL2VlanNetwork", name="v100", zoneUuid="z1", physicalInterface="eth0", vlan=4094
    )
    await refused(
        infra,
        Conflict,
        "L2_NETWORK.DUPLICATE_VLAN",
        "vlan",
        "CreateL2VlanNetwork",
        name="v100b",
        zoneUuid="z1",
        physicalInterface="eth0",
        vlan=4094,
    )
    await refused(
        infra,
        InvalidArgument,
        "L2_NETWORK.ZONE_MISMATCH",
        "clusterUuid",
        "AttachL2NetworkToCluster",
        l2NetworkUuid="l2",
        clusterUuid="c2",
    )
    await infra("AttachL2NetworkToCluster", l2NetworkUuid="l2", clusterUuid="c1")
    await refused(
        infra,
        Conflict,
        "L2_NETWORK.ALREADY_ATTACHED",
        "clusterUuid",
        "AttachL2NetworkToCluster",
        l2NetworkUuid="l2",
        clusterUuid="c1",
    )
    await infra("CreateL2NoVlanNetwork", name="l2b", zoneUuid="z1", physicalInterface="eth0")
    await refused(
        infra,
        Conflict,
        "L2_NETWORK.INTERFACE_CONFLICT",
        "clusterUuid",
        "AttachL2NetworkToCluster",
        l2NetworkUuid="l2b",
        clusterUuid="c1",
    )
    await infra(
        "AttachL2NetworkToCluster", l2NetworkUuid="v100", clusterUuid="c1"
    )  # a VLAN on eth0 is fine

    await refused(
        infra,
        InvalidArgument,
        "L3_NETWORK.INVALID_CATEGORY",
        "system",
        "CreateL3Network",
        name="s",
        l2NetworkUuid="l2",
        system=True,
    )
    await refused(
        infra,
        InvalidArgument,
        "L3_NETWORK.INVALID_CATEGORY",
        "category",
        "CreateL3Network",
        name="s",
        l2NetworkUuid="l2",
        category="System",
    )
    await refused(
        infra,
        InvalidArgument,
        "L3_NETWORK.INVALID_DNS_DOMAIN",
        "dnsDomain",
        "CreateL3Network",
        name="s",
        l2NetworkUuid="l2",
        dnsDomain="bad domain",
    )
    pub = (
        await infra(
            "CreateL3Network", name="pub", l2NetworkUuid="v100", category="Public", system=True
        )
    )["inventory"]
    assert (
        pub["zoneUuid"]
        == (await infra("QueryZone", conditions=["name=z1"]))["inventories"][0]["uuid"]
    )


RANGE = {
    "name": "r2",
    "l3NetworkUuid": "l3",
    "startIp": "10.0.0.10",
    "endIp": "10.0.0.20",
    "netmask": "255.255.255.0",
    "gateway": "10.0.0.1",
}


@pytest.mark.parametrize(
    ("changes", "kind", "code", "field"),
    [
        ({"startIp": "10.0.0"}, InvalidArgument, "IP_RANGE.INVALID_IP", "startIp"),
        ({"endIp": "10.0.0.256"}, InvalidArgument, "IP_RANGE.INVALID_IP", "endIp"),
        ({"gateway": "gw"}, InvalidArgument, "IP_RANGE.INVALID_IP", "gateway"),
        ({"startIp": "fe80::1"}, InvalidArgument, "IP_RANGE.INVALID_IP", "startIp"),
        ({"netmask": "255.0.255.0"}, InvalidArgument, "IP_RANGE.INVALID_NETMASK", "netmask"),
        ({"netmask": "255.255.255.255"}, InvalidArgument, "IP_RANGE.INVALID_NETMASK", "netmask"),
        ({"startIp": "10.0.0.30"}, InvalidArgument, "IP_RANGE.INVALID_RANGE", "endIp"),
        (
            {"startIp": "10.0.1.10", "endIp": "10.0.1.20"},
            InvalidArgument,
            "IP_RANGE.OUTSIDE_NETWORK",
            "startIp",
        ),
        ({"endIp": "10.0.1.20"}, InvalidArgument, "IP_RANGE.OUTSIDE_NETWORK", "endIp"),
        ({"endIp": "10.0.0.255"}, InvalidArgument, "IP_RANGE.OUTSIDE_NETWORK", "endIp"),
        ({"startIp": "10.0.0.0"}, InvalidArgument, "IP_RANGE.OUTSIDE_NETWORK", "startIp"),
        ({"gateway": "10.0.0.15"}, InvalidArgument, "IP_RANGE.GATEWAY_IN_RANGE", "gateway"),
        ({"startIp": "10.0.0.150", "endIp": "10.0.0.250"}, Conflict, "IP_RANGE.OVERLAP", "startIp"),
        ({"startIp": "10.0.0.50", "endIp": "10.0.0.100"}, Conflict, "IP_RANGE.OVERLAP", "startIp"),
        ({"gateway": "10.0.0.254"}, InvalidArgument, "IP_RANGE.NETWORK_MISMATCH", "gateway"),
        ({"name": "r1"}, Conflict, "IP_RANGE.DUPLICATE_NAME", "name"),
        ({"l3NetworkUuid": "nope"}, NotFound, "L3_NETWORK.NOT_FOUND", "l3NetworkUuid"),
    ],
)
async def test_ip_range_validation(
    infra: Api, changes: dict[str, str], kind: type[ZmnError], code: str, field: str
) -> None:
    await refused(infra, kind, code, field, "AddIpRange", **{**RANGE, **changes})
    assert (await infra("QueryIpRange", count=True))["total"] == 1


async def test_ip_ranges_that_fit(infra: Api) -> None:
    await infra("AddIpRange", **RANGE)
    await infra(
        "AddIpRange", **{**RANGE, "name": "r3", "startIp": "10.0.0.201", "endIp": "10.0.0.254"}
    )
    # the same addresses on another L3 network do not overlap anything
    await infra("CreateL2NoVlanNetwork", name="other", zoneUuid="z1", physicalInterface="eth1")
    await infra("CreateL3Network", name="l3b", l2NetworkUuid="other")
    await infra("AddIpRange", **{**RANGE, "l3NetworkUuid": "l3b", "name": "r1"})
    l3 = (await infra("QueryL3Network", conditions=["name=l3"]))["inventories"][0]
    assert [r["name"] for r in l3["ipRanges"]] == ["r1", "r2", "r3"]
    await refused(
        infra,
        InvalidArgument,
        "IP_RANGE.INVALID_CIDR",
        "networkCidr",
        "AddIpRangeByNetworkCidr",
        name="c",
        l3NetworkUuid="l3b",
        networkCidr="10.0.0.0/33",
    )
    await refused(
        infra,
        InvalidArgument,
        "IP_RANGE.GATEWAY_IN_RANGE",
        "gateway",
        "AddIpRangeByNetworkCidr",
        name="c",
        l3NetworkUuid="l3b",
        networkCidr="10.9.0.0/24",
        gateway="10.9.0.7",
    )
    with pytest.raises(Conflict) as overlap:
        await infra(
            "AddIpRangeByNetworkCidr", name="c", l3NetworkUuid="l3b", networkCidr="10.0.0.0/24"
        )
    assert overlap.value.code == "IP_RANGE.OVERLAP"
    await infra("DeleteIpRange", uuid=l3["ipRanges"][1]["uuid"])
    assert (await infra("QueryIpRange", conditions=["l3Network.name=l3"], count=True))["total"] == 2
