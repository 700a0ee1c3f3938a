"""A simulator cloud built through the public API, big enough for the VM benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zmn.client import AsyncClient

GiB = 1024**3
TiB = 1024**4
PiB = 1024**5


@dataclass
class Cloud:
    """UUIDs of what :func:`build_cloud` made, by key (zone, cluster, h1.., image, l3...)."""

    u: dict[str, str] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> str:
        return self.u[key]

    def vm_args(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "imageUuid": self.u["image"],
            "instanceOfferingUuid": self.u["small"],
            "l3NetworkUuids": [self.u["l3"]],
        }


async def build_cloud(
    client: AsyncClient, *, hosts: int = 8, vms: int = 10_000, prefix: str = "bench", net: int = 250
) -> Cloud:
    """Zone, cluster, ``hosts`` simulator hosts with room for ``vms`` small VMs, storage,
    image, offering, L2/L3 with a /16 address range. Names start with ``prefix`` and host
    addresses with ``10.<net>.``: two clouds on one node differ in both."""
    c = Cloud()

    async def make(key: str, api: str, **args: Any) -> str:
        c.u[key] = (await client.call(api, args))["inventory"]["uuid"]
        return c.u[key]

    per_host = max(64, -(-vms // hosts) * 2)
    await make("zone", "CreateZone", name=f"{prefix}-z1")
    await make(
        "cluster",
        "CreateCluster",
        name=f"{prefix}-c1",
        zoneUuid=c["zone"],
        hypervisorType="Simulator",
    )
    for i in range(hosts):
        uuid = await make(
            f"h{i}",
            "AddSimulatorHost",
            name=f"{prefix}-h{i}",
            managementIp=f"10.{net}.{i // 250}.{i % 250 + 1}",
            clusterUuid=c["cluster"],
            cpuCapacity=per_host,
            memoryCapacity=per_host * GiB,
        )
        c.hosts.append(uuid)
    await make(
        "ps",
        "AddSimulatorPrimaryStorage",
        name=f"{prefix}-ps",
        zoneUuid=c["zone"],
        url="/sim/ps",
        totalCapacity=PiB,
    )
    await client.call(
        "AttachPrimaryStorageToCluster",
        {"primaryStorageUuid": c["ps"], "clusterUuid": c["cluster"]},
    )
    await make(
        "bs",
        "AddSimulatorBackupStorage",
        name=f"{prefix}-bs",
        url="/sim/bs",
        totalCapacity=TiB,
        availableCapacity=TiB,
    )
    await client.call(
        "AttachBackupStorageToZone", {"backupStorageUuid": c["bs"], "zoneUuid": c["zone"]}
    )
    await make(
        "image",
        "AddImage",
        name=f"{prefix}-img",
        url="http://images.example/cirros.qcow2",
        format="qcow2",
        backupStorageUuids=[c["bs"]],
    )
    await make("small", "CreateInstanceOffering", name=f"{prefix}-small", cpuNum=1, memorySize=GiB)
    await make(
        "l2",
        "CreateL2NoVlanNetwork",
        name=f"{prefix}-l2",
        zoneUuid=c["zone"],
        physicalInterface="eth0",
    )
    await client.call(
        "AttachL2NetworkToCluster", {"l2NetworkUuid": c["l2"], "clusterUuid": c["cluster"]}
    )
    await make("l3", "CreateL3Network", name=f"{prefix}-l3", l2NetworkUuid=c["l2"])
    await make(
        "range",
        "AddIpRange",
        name=f"{prefix}-r1",
        l3NetworkUuid=c["l3"],
        startIp="10.0.0.10",
        endIp="10.0.255.250",
        netmask="255.255.0.0",
        gateway="10.0.0.1",
    )
    return c
