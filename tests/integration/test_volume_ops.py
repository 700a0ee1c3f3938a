"""Data volumes and snapshots: create (instantiated now or at first attach), attach to a
running or stopped VM, detach, delete; snapshots taken, reverted (VM stopped), deleted.
Primary-storage capacity follows every step; CheckConsistency holds after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, GiB, build_cloud, consistent
from zmn.api.errors import Conflict, InvalidArgument, InvalidState, OperationFailed

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    home = tmp_path_factory.mktemp("volumes") / "home"
    async with running_node(home) as (node, _server):
        yield await build_cloud(Api(node), storage=100 * GiB)


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def _ends_consistent(cloud: Cloud) -> AsyncIterator[None]:
    yield
    await consistent(cloud.api)


async def free(cloud: Cloud) -> int:
    ps = await cloud.api("QueryPrimaryStorage", conditions=[f"uuid={cloud['ps']}"])
    value: int = ps["inventories"][0]["availableCapacity"]
    return value


def sim_vm(cloud: Cloud, vm: dict[str, Any]) -> Any:
    hosts = cloud.api.node.services["host"].simulator.hosts  # type: ignore[attr-defined]
    return hosts[vm["hostUuid"]].vms[vm["uuid"]]


async def test_data_volume_life_cycle(cloud: Cloud) -> None:
    api = cloud.api
    start = await free(cloud)
    vol = (await api("CreateDataVolume", name="data-1", diskOfferingUuid="d10"))["inventory"]
    assert (vol["status"], vol["primaryStorageUuid"], vol["size"]) == (
        "NotInstantiated",
        None,
        10 * GiB,
    )
    assert await free(cloud) == start  # no storage yet
    vm = await cloud.vm("host-of-data")
    after_vm = await free(cloud)
    inv = (await api("AttachDataVolumeToVm", volumeUuid="data-1", vmInstanceUuid=vm["uuid"]))[
        "inventory"
    ]
    assert (inv["status"], inv["primaryStorageUuid"], inv["deviceId"]) == ("Ready", cloud["ps"], 1)
    assert inv["vmInstanceUuid"] == vm["uuid"]
    assert await free(cloud) == after_vm - 10 * GiB
    assert sim_vm(cloud, vm).volumes[vol["uuid"]] == 1  # hot-plugged
    shown = await cloud.get_vm(vm["uuid"])
    assert [v["type"] for v in shown["allVolumes"]] == ["Root", "Data"]
    with pytest.raises(Conflict):
        await api("AttachDataVolumeToVm", volumeUuid="data-1", vmInstanceUuid=vm["uuid"])
    with pytest.raises(InvalidArgument):  # a root volume is not a data volume
        await api("DetachDataVolumeFromVm", uuid=vm["rootVolumeUuid"])
    inv = (await api("DetachDataVolumeFromVm", uuid="data-1"))["inventory"]
    assert (inv["vmInstanceUuid"], inv["deviceId"]) == (None, None)
    assert vol["uuid"] not in sim_vm(cloud, vm).volumes
    with pytest.raises(Conflict):
        await api("DetachDataVolumeFromVm", uuid="data-1")
    # attach while stopped, then delete while attached (it is detached first)
    await api("StopVmInstance", uuid=vm["uuid"])
    await api("AttachDataVolumeToVm", volumeUuid="data-1", vmInstanceUuid=vm["uuid"])
    started = (await api("StartVmInstance", uuid=vm["uuid"]))["inventory"]
    assert sim_vm(cloud, started).volumes == {vm["rootVolumeUuid"]: 0, vol["uuid"]: 1}
    assert await api("DeleteDataVolume", uuid="data-1") == {}
    assert await free(cloud) == after_vm
    assert await cloud.count("Volume", "name=data-1") == 0
    await api("DestroyVmInstance", uuid=vm["uuid"])
    assert await free(cloud) == start


async def test_volume_on_given_storage_and_disabled_volume(cloud: Cloud) -> None:
    api = cloud.api
    start = await free(cloud)
    vol = (
        await api("CreateDataVolume", name="data-2", diskSize=GiB, primaryStorageUuid=cloud["ps"])
    )["inventory"]
    assert vol["status"] == "Ready" and vol["installPath"].startswith("/sim/ps/volumes/")
    assert await free(cloud) == start - GiB
    with pytest.raises(OperationFailed) as err:  # more than the storage has
        await api("CreateDataVolume", name="data-3", diskSize=1000 * GiB, primaryStorageUuid="ps1")
    assert err.value.code == "PRIMARY_STORAGE.ALLOCATION_FAILED"
    assert await cloud.count("Volume", "name=data-3") == 0
    with pytest.raises(InvalidArgument):
        await api("CreateDataVolume", name="data-4")
    vm = await cloud.vm("disabled-target", strategy="CreateStopped")
    inv = (await api("ChangeVolumeState", uuid="data-2", stateEvent="disable"))["inventory"]
    assert inv["state"] == "Disabled"
    with pytest.raises(InvalidState):
        await api("AttachDataVolumeToVm", volumeUuid="data-2", vmInstanceUuid=vm["uuid"])
    await api("ChangeVolumeState", uuid="data-2", stateEvent="enable")
    await api("DeleteDataVolume", uuid="data-2")
    await api("DestroyVmInstance", uuid=vm["uuid"])
    assert await free(cloud) == start


async def test_snapshots(cloud: Cloud) -> None:
    api = cloud.api
    vm = await cloud.vm("snappy")
    root = vm["rootVolumeUuid"]
    s1 = (await api("CreateVolumeSnapshot", volumeUuid=root, name="s1"))["inventory"]
    assert (s1["volumeUuid"], s1["volumeType"], s1["latest"], s1["parentUuid"]) == (
        root,
        "Root",
        True,
        None,
    )
    assert sim_vm(cloud, vm).snapshots == [s1["uuid"]]
    s2 = (await api("CreateVolumeSnapshot", volumeUuid=root, name="s2"))["inventory"]
    assert s2["parentUuid"] == s1["uuid"]
    rows = (await api("QueryVolumeSnapshot", conditions=[f"volumeUuid={root}"]))["inventories"]
    assert {r["name"]: r["latest"] for r in rows} == {"s1": False, "s2": True}
    with pytest.raises(InvalidState) as err:  # revert needs the VM stopped
        await api("RevertVolumeFromSnapshot", uuid=s1["uuid"])
    assert "Running" in err.value.message
    await api("StopVmInstance", uuid=vm["uuid"])
    await api("RevertVolumeFromSnapshot", uuid=s1["uuid"])
    rows = (await api("QueryVolumeSnapshot", conditions=[f"volumeUuid={root}"]))["inventories"]
    assert {r["name"]: r["latest"] for r in rows} == {"s1": True, "s2": False}
    await api("DeleteVolumeSnapshot", uuid=s1["uuid"])
    rows = (await api("QueryVolumeSnapshot", conditions=[f"volumeUuid={root}"]))["inventories"]
    assert [(r["name"], r["parentUuid"]) for r in rows] == [("s2", None)]
    await api("DestroyVmInstance", uuid=vm["uuid"])  # the snapshots go with the root volume
    assert await cloud.count("VolumeSnapshot", f"volumeUuid={root}") == 0
