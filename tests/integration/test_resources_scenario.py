"""The infrastructure reference scenario, by names and by UUIDs; joins; cascade; idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import String, func, or_, select

from tests.support.inproc import Api
from zmn.api.errors import Conflict
from zmn.core.db import Base

N = 1024**4  # 1 TiB of storage
HISTORY_TABLES = {"job", "flow_record", "audit_log"}  # they record what happened, by design


async def build(api: Api, *, by_name: bool, suffix: str = "") -> dict[str, str]:
    """Run the reference scenario; references by name or by UUID. Returns the UUIDs."""
    u: dict[str, str] = {}

    def ref(key: str, name: str) -> str:
        return name if by_name else u[key]

    async def make(key: str, api_name: str, **args: Any) -> None:
        u[key] = (await api(api_name, **args))["inventory"]["uuid"]

    s = suffix
    await make("Z", "CreateZone", name=f"z1{s}", userTags=["site=paris"])
    await make(
        "C", "CreateCluster", name=f"c1{s}", zoneUuid=ref("Z", f"z1{s}"), hypervisorType="Simulator"
    )
    await make(
        "H",
        "AddSimulatorHost",
        name=f"h1{s}",
        managementIp=f"10.0.0.1{s or '1'}",
        clusterUuid=ref("C", f"c1{s}"),
        cpuCapacity="32",
        memoryCapacity="68719476736",
        systemTags=["reservedMemory::1073741824"],
        userTags=["rack=a1"],
    )
    await make(
        "P",
        "AddSimulatorPrimaryStorage",
        name=f"ps1{s}",
        zoneUuid=ref("Z", f"z1{s}"),
        url="/sim/ps",
        totalCapacity=str(N),
        availableCapacity=str(N),
    )
    await api(
        "AttachPrimaryStorageToCluster",
        primaryStorageUuid=ref("P", f"ps1{s}"),
        clusterUuid=ref("C", f"c1{s}"),
    )
    await make(
        "B",
        "AddSimulatorBackupStorage",
        name=f"bs1{s}",
        url="/sim/bs",
        totalCapacity=str(N),
        availableCapacity=str(N),
    )
    await api(
        "AttachBackupStorageToZone",
        backupStorageUuid=ref("B", f"bs1{s}"),
        zoneUuid=ref("Z", f"z1{s}"),
    )
    await make(
        "I",
        "AddImage",
        name=f"img{s}",
        url="http://images.example/cirros.qcow2",
        format="qcow2",
        mediaType="RootVolumeTemplate",
        backupStorageUuids=ref("B", f"bs1{s}"),
    )
    await make(
        "IO", "CreateInstanceOffering", name=f"small{s}", cpuNum="1", memorySize="1073741824"
    )
    await make("DO", "CreateDiskOffering", name=f"d10{s}", diskSize="10737418240")
    await make(
        "L2",
        "CreateL2NoVlanNetwork",
        name=f"l2{s}",
        zoneUuid=ref("Z", f"z1{s}"),
        physicalInterface="eth0",
    )
    await make(
        "L2V",
        "CreateL2VlanNetwork",
        name=f"l2v{s}",
        zoneUuid=ref("Z", f"z1{s}"),
        physicalInterface="eth0",
        vlan="100",
    )
    await api(
        "AttachL2NetworkToCluster",
        l2NetworkUuid=ref("L2", f"l2{s}"),
        clusterUuid=ref("C", f"c1{s}"),
    )
    await api(
        "AttachL2NetworkToCluster",
        l2NetworkUuid=ref("L2V", f"l2v{s}"),
        clusterUuid=ref("C", f"c1{s}"),
    )
    await make(
        "L3",
        "CreateL3Network",
        name=f"l3{s}",
        l2NetworkUuid=ref("L2", f"l2{s}"),
        userTags=["tier=web"],
    )
    await make(
        "R",
        "AddIpRange",
        name="r1",
        l3NetworkUuid=ref("L3", f"l3{s}"),
        startIp="10.0.0.100",
        endIp="10.0.0.200",
        netmask="255.255.255.0",
        gateway="10.0.0.1",
    )
    return u


async def names(api: Api, query: str, *conditions: str) -> list[str]:
    result = await api(query, conditions=list(conditions))
    return [inv["name"] for inv in result["inventories"]]


@pytest.mark.parametrize("by_name", [True, False], ids=["names", "uuids"])
async def test_reference_scenario(node_api: Api, by_name: bool) -> None:
    u = await build(node_api, by_name=by_name)

    zones = (await node_api("QueryZone", conditions=["name=z1"]))["inventories"]
    assert [z["uuid"] for z in zones] == [u["Z"]]

    host = (await node_api("QueryHost", conditions=[f"uuid={u['H']}"]))["inventories"][0]
    assert host["zoneUuid"] == u["Z"] and host["clusterUuid"] == u["C"]
    assert (host["state"], host["status"], host["hypervisorType"]) == (
        "Enabled",
        "Connected",
        "Simulator",
    )
    assert host["cpuNum"] == host["totalCpuCapacity"] == host["availableCpuCapacity"] == 32
    assert host["totalMemoryCapacity"] == 64 * 1024**3
    assert host["availableMemoryCapacity"] == 63 * 1024**3  # reservedMemory::1 GiB

    ps = (await node_api("QueryPrimaryStorage", conditions=["name=ps1"]))["inventories"][0]
    assert ps["attachedClusterUuids"] == [u["C"]]
    assert ps["totalCapacity"] == ps["availableCapacity"] == ps["totalPhysicalCapacity"] == N

    image = (await node_api("QueryImage", conditions=["name=img"]))["inventories"][0]
    assert image["status"] == "Ready" and image["format"] == "qcow2"
    [bs_ref] = image["backupStorageRefs"]
    assert bs_ref["backupStorageUuid"] == u["B"] and bs_ref["installPath"].startswith("/sim/bs/")
    bs = (await node_api("QueryBackupStorage", conditions=["name=bs1"]))["inventories"][0]
    assert bs["attachedZoneUuids"] == [u["Z"]]
    assert bs["availableCapacity"] == N - image["actualSize"]

    offering = (await node_api("QueryInstanceOffering", conditions=["name=small"]))["inventories"][
        0
    ]
    assert (offering["cpuNum"], offering["memorySize"], offering["type"]) == (1, 1024**3, "UserVm")
    disk = (await node_api("QueryDiskOffering", conditions=["name=d10"]))["inventories"][0]
    assert disk["diskSize"] == 10 * 1024**3

    l2v = (await node_api("QueryL2Network", conditions=["name=l2v"]))["inventories"][0]
    assert (l2v["type"], l2v["vlan"], l2v["attachedClusterUuids"]) == (
        "L2VlanNetwork",
        100,
        [u["C"]],
    )
    l3 = (await node_api("QueryL3Network", conditions=["name=l3"]))["inventories"][0]
    assert (l3["zoneUuid"], l3["category"], l3["type"]) == (u["Z"], "Private", "L3BasicNetwork")
    [ip_range] = l3["ipRanges"]
    assert ip_range["networkCidr"] == "10.0.0.0/24" and ip_range["ipVersion"] == 4


async def test_query_joins(node_api: Api) -> None:
    await build(node_api, by_name=True)
    await node_api("CreateZone", name="z2")  # a zone that no join may return
    assert await names(node_api, "QueryZone", "cluster.host.name=h1") == ["z1"]
    assert await names(node_api, "QueryHost", "cluster.zone.name=z1") == ["h1"]
    assert await names(node_api, "QueryCluster", "primaryStorage.name=ps1") == ["c1"]
    assert await names(node_api, "QueryL3Network", "l2Network.zone.name=z1") == ["l3"]
    assert await names(node_api, "QueryZone", "l2Network.l3Network.ipRange.startIp=10.0.0.100") == [
        "z1"
    ]
    assert await names(node_api, "QueryImage", "backupStorage.name=bs1") == ["img"]
    # the other directions of the same declarations
    assert await names(node_api, "QueryZone", "backupStorage.name=bs1") == ["z1"]
    assert await names(node_api, "QueryPrimaryStorage", "cluster.name=c1") == ["ps1"]
    assert sorted(
        await names(node_api, "QueryL2Network", "cluster.host.managementIp=10.0.0.11")
    ) == ["l2", "l2v"]
    assert await names(node_api, "QueryBackupStorage", "image.name=img") == ["bs1"]
    assert await names(node_api, "QueryZone", "cluster.host.name=nope") == []
    assert await names(node_api, "QueryIpRange", "l3Network.l2Network.vlan=null") == ["r1"]


def orphans(api: Api, deleted: set[str]) -> dict[str, int]:
    """Rows of any table (except history) that still mention a deleted UUID."""
    found: dict[str, int] = {}
    with api.node.db.tx() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in HISTORY_TABLES:
                continue
            columns = [c for c in table.columns if isinstance(c.type, String)]
            if not columns:
                continue
            n = s.scalar(
                select(func.count())
                .select_from(table)
                .where(or_(*[c.in_(deleted) for c in columns]))
            )
            if n:
                found[table.name] = int(n)
    return found


def row_counts(api: Api) -> dict[str, int]:
    with api.node.db.tx() as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


async def test_delete_zone_refuses_then_cascades(node_api: Api) -> None:
    before = row_counts(node_api)
    u = await build(node_api, by_name=True)
    other = await build(node_api, by_name=True, suffix="2")  # a second, untouched zone tree

    with pytest.raises(Conflict) as refused:
        await node_api("DeleteZone", uuid="z1")
    err = refused.value
    assert err.code == "ZONE.HAS_DEPENDENTS" and err.field == "uuid"
    assert "cluster" in err.message and "cascade=true" in err.message
    assert set(err.details["dependents"]) >= {
        "Cluster",
        "Host",
        "PrimaryStorage",
        "L2Network",
        "L3Network",
    }
    assert await names(node_api, "QueryCluster", "name=c1") == ["c1"]  # nothing was deleted

    deleted_events: list[str] = []
    sub = node_api.node.bus.subscribe(
        "/**", lambda e: deleted_events.append(e.path) if e.path.endswith("/deleted") else None
    )
    await node_api("DeleteZone", uuid="z1", cascade=True)
    sub.cancel()

    zone_bound = {k: v for k, v in u.items() if k not in ("B", "I", "IO", "DO")}
    assert orphans(node_api, set(zone_bound.values())) == {}
    assert node_api.node.services["host"].simulator.hosts.keys() == {other["H"]}  # type: ignore[attr-defined]
    after = row_counts(node_api)
    # the second tree is intact; of the first, only what is not zone-bound survives
    for table in (
        "zone",
        "cluster",
        "host",
        "primary_storage",
        "l2_network",
        "l3_network",
        "ip_range",
    ):
        assert after[table] == before[table] + (2 if table == "l2_network" else 1), table
    for table in ("primary_storage_cluster_ref", "backup_storage_zone_ref"):
        assert after[table] == before[table] + 1, table
    assert after["l2_network_cluster_ref"] == before["l2_network_cluster_ref"] + 2
    assert after["backup_storage"] == before["backup_storage"] + 2
    assert after["image"] == after["image_backup_storage_ref"] == before["image"] + 2
    assert after["instance_offering"] == before["instance_offering"] + 2
    bs = (await node_api("QueryBackupStorage", conditions=["name=bs1"]))["inventories"][0]
    assert bs["attachedZoneUuids"] == []
    assert {
        "/zone/deleted",
        "/cluster/deleted",
        "/host/deleted",
        "/primary-storage/deleted",
        "/l2-network/deleted",
        "/l3-network/deleted",
        "/ip-range/deleted",
    } <= set(deleted_events)

    # the rest goes too, leaving the tables as they were
    await node_api("DeleteZone", uuid="z12", cascade=True)
    for key in ("I", "B", "IO", "DO"):
        api_name = {
            "I": "DeleteImage",
            "B": "DeleteBackupStorage",
            "IO": "DeleteInstanceOffering",
            "DO": "DeleteDiskOffering",
        }[key]
        await node_api(api_name, uuid=u[key])
        await node_api(api_name, uuid=other[key])
    assert orphans(node_api, set(u.values()) | set(other.values())) == {}
    final = row_counts(node_api)
    for table in before:
        if table not in HISTORY_TABLES:
            assert final[table] == before[table], table


async def test_delete_cluster_cascades_to_hosts_and_links(node_api: Api) -> None:
    u = await build(node_api, by_name=True)
    with pytest.raises(Conflict) as refused:
        await node_api("DeleteCluster", uuid="c1")
    assert refused.value.code == "CLUSTER.HAS_DEPENDENTS"
    await node_api("DeleteCluster", uuid="c1", cascade=True)
    assert await names(node_api, "QueryHost") == []
    ps = (await node_api("QueryPrimaryStorage", conditions=["name=ps1"]))["inventories"][0]
    assert ps["attachedClusterUuids"] == []
    assert orphans(node_api, {u["C"], u["H"]}) == {}
    # an L2 network with an L3 and ranges refuses too, then cascades
    with pytest.raises(Conflict) as refused:
        await node_api("DeleteL2Network", uuid="l2")
    assert refused.value.code == "L2_NETWORK.HAS_DEPENDENTS"
    await node_api("DeleteL2Network", uuid="l2", cascade=True)
    assert (
        await names(node_api, "QueryL3Network") == []
        and await names(node_api, "QueryIpRange") == []
    )


async def test_idempotent_creates_return_the_first(node_api: Api) -> None:
    await build(node_api, by_name=True)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("CreateCluster", {"name": "c9", "zoneUuid": "z1", "hypervisorType": "Simulator"}),
        (
            "AddSimulatorHost",
            {
                "name": "h9",
                "managementIp": "10.0.0.99",
                "clusterUuid": "c9",
                "cpuCapacity": 4,
                "memoryCapacity": 2**30,
            },
        ),
        (
            "AddSimulatorPrimaryStorage",
            {"name": "ps9", "zoneUuid": "z1", "url": "/p", "totalCapacity": 10},
        ),
        ("AddSimulatorBackupStorage", {"name": "bs9", "url": "/b", "totalCapacity": N}),
        (
            "AddImage",
            {
                "name": "img9",
                "url": "http://x/y.iso",
                "format": "iso",
                "mediaType": "ISO",
                "backupStorageUuids": ["bs9"],
            },
        ),
        ("CreateInstanceOffering", {"name": "o9", "cpuNum": 2, "memorySize": 2**31}),
        ("CreateDiskOffering", {"name": "d9", "diskSize": 2**30}),
        (
            "CreateL2VlanNetwork",
            {"name": "v9", "zoneUuid": "z1", "physicalInterface": "eth1", "vlan": 9},
        ),
        ("CreateL3Network", {"name": "l39", "l2NetworkUuid": "v9"}),
        (
            "AddIpRangeByNetworkCidr",
            {"name": "r9", "l3NetworkUuid": "l39", "networkCidr": "192.168.9.0/24"},
        ),
    ]
    for index, (api_name, args) in enumerate(cases):
        uuid = f"{index:02d}" + "ab" * 15
        first = (await node_api(api_name, resourceUuid=uuid, **args))["inventory"]
        again = (await node_api(api_name, resourceUuid=uuid, **args))["inventory"]
        assert first["uuid"] == again["uuid"] == uuid, api_name
        assert again["createDate"] == first["createDate"], api_name
    bs = (await node_api("QueryBackupStorage", conditions=["name=bs9"]))["inventories"][0]
    assert bs["availableCapacity"] == N - 1024**3  # the image was added once, not twice
    r9 = (await node_api("QueryIpRange", conditions=["name=r9"]))["inventories"][0]
    assert (r9["startIp"], r9["endIp"], r9["gateway"]) == (
        "192.168.9.2",
        "192.168.9.254",
        "192.168.9.1",
    )


async def test_attach_detach_round_trip(node_api: Api) -> None:
    u = await build(node_api, by_name=True)
    events: list[str] = []
    node_api.node.bus.subscribe(
        "/**", lambda e: events.append(e.path) if e.path.endswith("tached") else None
    )

    for attach, detach, args, query, field, expected in [
        (
            "AttachPrimaryStorageToCluster",
            "DetachPrimaryStorageFromCluster",
            {"primaryStorageUuid": "ps1", "clusterUuid": "c1"},
            "QueryPrimaryStorage",
            "attachedClusterUuids",
            u["C"],
        ),
        (
            "AttachBackupStorageToZone",
            "DetachBackupStorageFromZone",
            {"backupStorageUuid": "bs1", "zoneUuid": "z1"},
            "QueryBackupStorage",
            "attachedZoneUuids",
            u["Z"],
        ),
        (
            "AttachL2NetworkToCluster",
            "DetachL2NetworkFromCluster",
            {"l2NetworkUuid": "l2", "clusterUuid": "c1"},
            "QueryL2Network",
            "attachedClusterUuids",
            u["C"],
        ),
    ]:
        name = next(iter(args.values()))
        detached = (await node_api(detach, **args))["inventory"]
        assert detached[field] == []
        with pytest.raises(Conflict) as twice:
            await node_api(detach, **args)
        assert twice.value.code.endswith(".NOT_ATTACHED")
        attached = (await node_api(attach, **args))["inventory"]
        assert attached[field] == [expected]
        with pytest.raises(Conflict) as dup:
            await node_api(attach, **args)
        assert dup.value.code.endswith(".ALREADY_ATTACHED")
        row = (await node_api(query, conditions=[f"name={name}"]))["inventories"][0]
        assert row[field] == [expected]
    assert (
        events.count("/primary-storage/attached") == 1
        and events.count("/primary-storage/detached") == 1
    )
    assert (
        events.count("/backup-storage/attached") == 1 and events.count("/l2-network/detached") == 1
    )
    assert await names(node_api, "QueryCluster", "l2Network.name=l2") == ["c1"]


async def test_update_and_state_changes(node_api: Api) -> None:
    await build(node_api, by_name=True)
    events: list[tuple[str, Any]] = []
    node_api.node.bus.subscribe("/**", lambda e: events.append((e.path, e.data.get("newState"))))
    for api_name, uuid, event, state in [
        ("ChangeClusterState", "c1", "disable", "Disabled"),
        ("ChangeHostState", "h1", "disable", "Disabled"),
        ("ChangePrimaryStorageState", "ps1", "maintain", "Maintenance"),
        ("ChangeBackupStorageState", "bs1", "disable", "Disabled"),
        ("ChangeImageState", "img", "disable", "Disabled"),
        ("ChangeInstanceOfferingState", "small", "disable", "Disabled"),
        ("ChangeDiskOfferingState", "d10", "disable", "Disabled"),
        ("ChangeL3NetworkState", "l3", "disable", "Disabled"),
    ]:
        inv = (await node_api(api_name, uuid=uuid, stateEvent=event))["inventory"]
        assert inv["state"] == state, api_name
    assert ("/host/state/change", "Disabled") in events
    assert ("/primary-storage/state/change", "Maintenance") in events
    assert ("/l3-network/state/change", "Disabled") in events

    for api_name, uuid in [
        ("UpdateCluster", "c1"),
        ("UpdateHost", "h1"),
        ("UpdatePrimaryStorage", "ps1"),
        ("UpdateBackupStorage", "bs1"),
        ("UpdateImage", "img"),
        ("UpdateInstanceOffering", "small"),
        ("UpdateDiskOffering", "d10"),
        ("UpdateL2Network", "l2"),
        ("UpdateL3Network", "l3"),
        ("UpdateIpRange", "r1"),
    ]:
        inv = (await node_api(api_name, uuid=uuid, name=f"{uuid}-new", description="renamed"))[
            "inventory"
        ]
        assert (inv["name"], inv["description"]) == (f"{uuid}-new", "renamed"), api_name
    await node_api(
        "AddSimulatorHost",
        name="h2",
        managementIp="10.0.0.12",
        clusterUuid="c1-new",
        cpuCapacity=2,
        memoryCapacity=2**30,
    )
    with pytest.raises(Conflict) as dup_ip:
        await node_api("UpdateHost", uuid="h1-new", managementIp="10.0.0.12")
    assert (dup_ip.value.code, dup_ip.value.field) == ("HOST.DUPLICATE_IP", "managementIp")
    with pytest.raises(Conflict) as dup_name:
        await node_api("UpdateHost", uuid="h1-new", name="h2")
    assert (dup_name.value.code, dup_name.value.field) == ("HOST.DUPLICATE_NAME", "name")
    host = (await node_api("UpdateHost", uuid="h1-new", name="h1-new", managementIp="10.0.0.13"))[
        "inventory"
    ]
    assert host["managementIp"] == "10.0.0.13"
    l3 = (await node_api("UpdateL3Network", uuid="l3-new", dnsDomain="corp.example"))["inventory"]
    assert l3["dnsDomain"] == "corp.example"
