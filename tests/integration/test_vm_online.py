"""Online changes on simulator hosts: CPU/memory hot-add within the limits fixed at start,
volume growth; capacity accounted exactly and nothing changed when a change is refused.

One node per module; every test ends with CheckConsistency clean.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, GiB, build_cloud, consistent
from zmn.api.errors import InvalidArgument, InvalidState, OperationFailed

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    home = tmp_path_factory.mktemp("vm-online") / "home"
    async with running_node(home, conf={"testing.faults": "true"}) as (node, _server):
        c = await build_cloud(Api(node), hosts=((8, 16 * GiB),))
        for name, cpu, memory in (("mid", 2, 2 * GiB), ("huge", 6, 2 * GiB)):
            c.u[name] = (
                await c.api("CreateInstanceOffering", name=name, cpuNum=cpu, memorySize=memory)
            )["inventory"]["uuid"]
        yield c


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def _ends_consistent(cloud: Cloud) -> AsyncIterator[None]:
    yield
    await consistent(cloud.api)


def sim(cloud: Cloud) -> Any:
    return cloud.api.node.services["host"].simulator  # type: ignore[attr-defined]


async def set_max(cloud: Cloud, cpu: int, memory: int) -> None:
    await cloud.api("UpdateGlobalConfig", category="vm", name="cpu.hotplugMax", value=cpu)
    await cloud.api("UpdateGlobalConfig", category="vm", name="memory.hotplugMax", value=memory)


async def used(cloud: Cloud) -> tuple[int, int]:
    h = await cloud.host("h1")
    return (
        h["totalCpuCapacity"] - h["availableCpuCapacity"],
        h["totalMemoryCapacity"] - h["availableMemoryCapacity"],
    )


async def test_a_running_vm_grows_within_the_limits_fixed_at_its_start(cloud: Cloud) -> None:
    api = cloud.api
    await set_max(cloud, 4, 3 * GiB)
    vm = await cloud.vm("grow-1", hostUuid=cloud["h1"])
    await set_max(cloud, 0, 0)  # too late for grow-1: its limits were fixed when it started
    base = await used(cloud)

    inv = (
        await api("ChangeInstanceOffering", vmInstanceUuid=vm["uuid"], instanceOfferingUuid="mid")
    )["inventory"]
    assert (inv["state"], inv["cpuNum"], inv["memorySize"]) == ("Running", 2, 2 * GiB)
    assert inv["instanceOfferingUuid"] == cloud["mid"]
    rec = sim(cloud).vm(cloud["h1"], vm["uuid"])
    assert (rec.cpuNum, rec.memorySize) == (2, 2 * GiB)
    assert await used(cloud) == (base[0] + 1, base[1] + GiB)  # the extra, reserved once

    # beyond the maximum, shrinking, and a hypervisor failure: refused, nothing changes
    grown = await used(cloud)
    with pytest.raises(InvalidState) as err:
        await api("ChangeInstanceOffering", vmInstanceUuid="grow-1", instanceOfferingUuid="huge")
    assert err.value.code == "VM_INSTANCE.HOTPLUG_LIMIT" and err.value.field == "cpuNum"
    assert "at most 4 vCPUs" in err.value.message and "vm/cpu.hotplugMax" in err.value.message
    with pytest.raises(InvalidState) as err:
        await api("UpdateVmInstance", uuid="grow-1", memorySize=4 * GiB)
    assert "vm/memory.hotplugMax" in err.value.message and err.value.field == "memorySize"
    with pytest.raises(InvalidState) as err:
        await api("ChangeInstanceOffering", vmInstanceUuid="grow-1", instanceOfferingUuid="small")
    assert err.value.code == "VM_INSTANCE.HOTPLUG_SHRINK" and "stop it" in err.value.message
    with pytest.raises(InvalidArgument) as arg_err:
        await api("UpdateVmInstance", uuid="grow-1", memorySize=2 * GiB + 1024 * 1024)
    assert arg_err.value.code == "VM_INSTANCE.HOTPLUG_BLOCK"
    await api("SimulatorInjectFailure", hostUuid=cloud["h1"], operation="changeCpuMemory")
    with pytest.raises(OperationFailed):
        await api("UpdateVmInstance", uuid="grow-1", cpuNum=3)
    after = await cloud.get_vm(vm["uuid"])
    assert (after["cpuNum"], after["memorySize"], after["instanceOfferingUuid"]) == (
        2,
        2 * GiB,
        cloud["mid"],
    )
    assert (rec.cpuNum, rec.memorySize) == (2, 2 * GiB)
    assert await used(cloud) == grown

    # UpdateVmInstance grows it too; stopping gives back exactly what it holds
    inv = (await api("UpdateVmInstance", uuid="grow-1", cpuNum=4, memorySize=3 * GiB))["inventory"]
    assert (inv["cpuNum"], inv["memorySize"], inv["instanceOfferingUuid"]) == (4, 3 * GiB, None)
    assert await used(cloud) == (base[0] + 3, base[1] + 2 * GiB)
    await api("StopVmInstance", uuid="grow-1")
    assert await used(cloud) == (base[0] - 1, base[1] - GiB)
    # stopped: any size, taken at the next start
    inv = (
        await api("ChangeInstanceOffering", vmInstanceUuid="grow-1", instanceOfferingUuid="huge")
    )["inventory"]
    assert inv["cpuNum"] == 6
    await api("DestroyVmInstance", uuid="grow-1")


async def test_without_hot_add_limits_a_running_vm_needs_a_stop(cloud: Cloud) -> None:
    await set_max(cloud, 0, 0)
    vm = await cloud.vm("fixed-1", hostUuid=cloud["h1"])
    base = await used(cloud)
    with pytest.raises(InvalidState) as err:
        await cloud.api(
            "ChangeInstanceOffering", vmInstanceUuid=vm["uuid"], instanceOfferingUuid="mid"
        )
    assert "at most 1 vCPUs" in err.value.message and "needs a stop" in err.value.message
    assert await used(cloud) == base
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])


async def ps_available(cloud: Cloud) -> int:
    rows = (await cloud.api("QueryPrimaryStorage", conditions=[f"uuid={cloud['ps']}"]))[
        "inventories"
    ]
    return int(rows[0]["availableCapacity"])


async def test_volumes_grow_online_and_stopped_with_the_bytes_reserved(cloud: Cloud) -> None:
    api = cloud.api
    vm = await cloud.vm("vol-1", hostUuid=cloud["h1"])
    root = vm["rootVolumeUuid"]
    size = int(next(v for v in vm["allVolumes"] if v["uuid"] == root)["size"])
    free = await ps_available(cloud)

    inv = (await api("ResizeRootVolume", volumeUuid=root, size=size + GiB))["inventory"]
    assert inv["size"] == size + GiB
    assert sim(cloud).vm(cloud["h1"], vm["uuid"]).volumeSizes[root] == size + GiB  # online
    assert await ps_available(cloud) == free - GiB

    with pytest.raises(InvalidArgument) as err:
        await api("ResizeRootVolume", volumeUuid=root, size=size)
    assert err.value.code == "VOLUME.SHRINK" and err.value.field == "size"
    with pytest.raises(InvalidArgument) as err:
        await api("ResizeDataVolume", volumeUuid=root, size=size * 4)
    assert err.value.code == "VOLUME.WRONG_TYPE" and "ResizeRootVolume" in err.value.message
    await api("SimulatorInjectFailure", hostUuid=cloud["h1"], operation="resizeVolume")
    with pytest.raises(OperationFailed):
        await api("ResizeRootVolume", volumeUuid=root, size=size + 2 * GiB)
    assert await ps_available(cloud) == free - GiB  # the reservation went back
    vols = (await api("QueryVolume", conditions=[f"uuid={root}"]))["inventories"]
    assert vols[0]["size"] == size + GiB

    # a storage without room refuses before anything changes
    with pytest.raises(OperationFailed):
        await api("ResizeRootVolume", volumeUuid=root, size=size + GiB + free)
    assert await ps_available(cloud) == free - GiB

    # stopped: grown on the storage; a data volume not made yet: bookkeeping only
    await api("StopVmInstance", uuid=vm["uuid"])
    await api("ResizeRootVolume", volumeUuid=root, size=size + 2 * GiB)
    assert await ps_available(cloud) == free - 2 * GiB
    data = (await api("CreateDataVolume", name="d-1", diskSize=GiB))["inventory"]
    inv = (await api("ResizeDataVolume", volumeUuid=data["uuid"], size=3 * GiB))["inventory"]
    assert (inv["size"], inv["status"]) == (3 * GiB, "NotInstantiated")
    assert await ps_available(cloud) == free - 2 * GiB
    await api("DeleteDataVolume", uuid=data["uuid"])
    await api("DestroyVmInstance", uuid=vm["uuid"])
