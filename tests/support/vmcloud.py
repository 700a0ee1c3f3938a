"""A small simulator cloud for VM tests, and the checks every VM test ends with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.inproc import Api

GiB = 1024**3
TiB = 1024**4


@dataclass
class Cloud:
    api: Api
    u: dict[str, str] = field(default_factory=dict)
    server: Any = None  # the node's ApiServer, for clients with a session

    def __getitem__(self, key: str) -> str:
        return self.u[key]

    async def vm(self, name: str, **args: Any) -> dict[str, Any]:
        """Create a VM on the cloud's image, offering and L3 (overridable)."""
        params: dict[str, Any] = {
            "name": name,
            "imageUuid": self.u["image"],
            "instanceOfferingUuid": self.u["small"],
            "l3NetworkUuids": [self.u["l3"]],
        }
        params.update(args)
        if "cpuNum" in args:
            params.pop("instanceOfferingUuid", None)
        inv: dict[str, Any] = (await self.api("CreateVmInstance", **params))["inventory"]
        return inv

    async def get_vm(self, uuid: str) -> dict[str, Any]:
        rows = (await self.api("QueryVmInstance", conditions=[f"uuid={uuid}"]))["inventories"]
        assert len(rows) == 1, rows
        inv: dict[str, Any] = rows[0]
        return inv

    async def host(self, key: str) -> dict[str, Any]:
        rows = (await self.api("QueryHost", conditions=[f"uuid={self.u[key]}"]))["inventories"]
        inv: dict[str, Any] = rows[0]
        return inv

    async def count(self, type_name: str, *conditions: str) -> int:
        result = await self.api(f"Query{type_name}", conditions=list(conditions), count=True)
        return int(result["total"])


async def build_cloud(
    api: Api,
    *,
    hosts: tuple[tuple[int, int], ...] = ((8, 16 * GiB), (8, 16 * GiB)),
    ip_range: tuple[str, str] = ("10.0.0.100", "10.0.0.200"),
    storage: int = 10 * TiB,
    prefix: str = "",
) -> Cloud:
    """Zone, cluster, simulator hosts h1.., primary/backup storage, image, offerings, L2/L3."""
    c = Cloud(api)
    p = prefix

    async def make(key: str, api_name: str, **args: Any) -> str:
        c.u[key] = (await api(api_name, **args))["inventory"]["uuid"]
        return c.u[key]

    await make("zone", "CreateZone", name=f"{p}z1")
    await make(
        "cluster", "CreateCluster", name=f"{p}c1", zoneUuid=c["zone"], hypervisorType="Simulator"
    )
    for i, (cpu, memory) in enumerate(hosts, start=1):
        await make(
            f"h{i}",
            "AddSimulatorHost",
            name=f"{p}h{i}",
            managementIp=f"10.{len(p)}.0.{10 + i}",
            clusterUuid=c["cluster"],
            cpuCapacity=cpu,
            memoryCapacity=memory,
        )
    await make(
        "ps",
        "AddSimulatorPrimaryStorage",
        name=f"{p}ps1",
        zoneUuid=c["zone"],
        url="/sim/ps",
        totalCapacity=storage,
    )
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid=c["ps"], clusterUuid=c["cluster"])
    await make(
        "bs",
        "AddSimulatorBackupStorage",
        name=f"{p}bs1",
        url="/sim/bs",
        totalCapacity=TiB,
        availableCapacity=TiB,
    )
    await api("AttachBackupStorageToZone", backupStorageUuid=c["bs"], zoneUuid=c["zone"])
    await make(
        "image",
        "AddImage",
        name=f"{p}img",
        url="http://images.example/cirros.qcow2",
        format="qcow2",
        backupStorageUuids=[c["bs"]],
    )
    await make("small", "CreateInstanceOffering", name=f"{p}small", cpuNum=1, memorySize=GiB)
    await make("d10", "CreateDiskOffering", name=f"{p}d10", diskSize=10 * GiB)
    await make(
        "l2", "CreateL2NoVlanNetwork", name=f"{p}l2", zoneUuid=c["zone"], physicalInterface="eth0"
    )
    await api("AttachL2NetworkToCluster", l2NetworkUuid=c["l2"], clusterUuid=c["cluster"])
    await make("l3", "CreateL3Network", name=f"{p}l3", l2NetworkUuid=c["l2"])
    await make(
        "range",
        "AddIpRange",
        name="r1",
        l3NetworkUuid=c["l3"],
        startIp=ip_range[0],
        endIp=ip_range[1],
        netmask="255.255.255.0",
        gateway="10.0.0.1",
    )
    return c


async def consistent(api: Api) -> None:
    """CheckConsistency holds (the check every VM test ends with)."""
    violations = (await api("CheckConsistency"))["violations"]
    assert violations == [], violations
