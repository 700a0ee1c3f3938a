"""Many VMs at once: 110 concurrent creates on an L3 network of exactly 101 addresses.

No address is given twice, the 9 surplus creates fail with "IP exhausted" (and leave nothing),
and the hosts' and storage's capacity is exactly what the 101 VMs take.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from sqlalchemy import delete, select

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import GiB, build_cloud, consistent
from zmn.api.errors import Conflict
from zmn.core.db import new_uuid
from zmn.services.network.models import IpRangeVO, UsedIpVO


async def test_110_concurrent_creates_on_101_addresses(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(
            api, hosts=((32, 128 * GiB), (32, 128 * GiB)), ip_range=("10.0.0.100", "10.0.0.200")
        )
        results = await asyncio.gather(
            *(cloud.vm(f"vm-{i:03d}") for i in range(110)), return_exceptions=True
        )
        made = [r for r in results if isinstance(r, dict)]
        failed = [r for r in results if not isinstance(r, dict)]
        assert len(made) == 101 and len(failed) == 9
        for err in failed:
            assert isinstance(err, Conflict), err
            assert err.code == "L3.IP_EXHAUSTED" and "IP exhausted" in err.message
            assert err.details["flow"] == "vm-allocate-nics"
        ips = [vm["vmNics"][0]["ip"] for vm in made]
        assert len(set(ips)) == 101
        expected = {str(ipaddress.IPv4Address("10.0.0.100") + i) for i in range(101)}
        assert set(ips) == expected
        assert await cloud.count("VmInstance") == 101
        assert await cloud.count("VmNic") == await cloud.count("UsedIp") == 101
        assert await cloud.count("Volume") == 101
        hosts = (await api("QueryHost"))["inventories"]
        placed_cpu = sum(h["totalCpuCapacity"] - h["availableCpuCapacity"] for h in hosts)
        placed_mem = sum(h["totalMemoryCapacity"] - h["availableMemoryCapacity"] for h in hosts)
        assert (placed_cpu, placed_mem) == (101, 101 * GiB)
        ps = (await api("QueryPrimaryStorage"))["inventories"][0]
        assert ps["totalCapacity"] - ps["availableCapacity"] == 101 * 10 * GiB
        await consistent(api)


async def test_an_address_taken_meanwhile_is_retried(tmp_path: Path) -> None:
    """Another node takes the next address behind this node's back: the node's copy of the
    used addresses is stale, the insert hits UNIQUE(l3, ip), and the next address is given."""
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api, hosts=((4, 8 * GiB),), ip_range=("10.0.0.100", "10.0.0.102"))
        first = await cloud.vm("a")
        assert first["vmNics"][0]["ip"] == "10.0.0.100"
        other = new_uuid()
        with node.db.tx() as s:  # as another node would: a row this node has not seen
            r = s.scalars(select(IpRangeVO)).one()
            s.add(
                UsedIpVO(
                    uuid=other,
                    l3NetworkUuid=r.l3NetworkUuid,
                    ipRangeUuid=r.uuid,
                    ip="10.0.0.101",
                    ipInLong=int(ipaddress.IPv4Address("10.0.0.101")),
                    netmask=r.netmask,
                    gateway=r.gateway,
                    usedFor="Vip",
                )
            )
        second = await cloud.vm("b")
        assert second["vmNics"][0]["ip"] == "10.0.0.102"
        with node.db.tx() as s:  # the other node's VIP goes away (it has no VIP row here)
            s.execute(delete(UsedIpVO).where(UsedIpVO.uuid == other))
        await consistent(api)
