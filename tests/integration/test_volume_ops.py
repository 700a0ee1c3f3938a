"""Data volumes and snapshots: create (instantiated now or at first attach), attach to a
running or stopped VM, detach, delete; snapshots taken, reverted (VM stopped), deleted.
Primary-storage capacity follows every step; CheckConsistency holds after each test.
Attach and detach are flow chains: a failure before or after any of their steps leaves the
volume, the storage and the hypervisor exactly as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, GiB, build_cloud, consistent
from zmn.api.errors import Conflict, InvalidArgument, InvalidState, OperationFailed, ZmnError
from zmn.core.crashpoint import CrashPlan, CrashPoints
from zmn.services.volume.flows import recover

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    home = tmp_path_factory.mktemp("volumes") / "home"
    async with running_node(home, conf={"testing.faults": "true"}) as (node, _server):
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


async def volume_state(cloud: Cloud, uuid: str, vm: dict[str, Any]) -> dict[str, Any]:
    """What a failed attach or detach must leave exactly as it was."""
    rows = await cloud.api("QueryVolume", conditions=[f"uuid={uuid}"])
    inv = rows["inventories"][0]
    return {
        "volume": {
            k: inv[k] for k in ("status", "primaryStorageUuid", "vmInstanceUuid", "deviceId")
        },
        "free": await free(cloud),
        "plugged": dict(sim_vm(cloud, vm).volumes),
    }


async def failing(
    cloud: Cloud, chain: str, flow: str, when: str, api_name: str, **args: Any
) -> None:
    api = cloud.api
    await api("InjectFlowFault", chain=chain, flow=flow, when=when)
    with pytest.raises(ZmnError) as err:
        await api(api_name, **args)
    assert await api("ClearFlowFaults") == {"faults": []}
    e = err.value
    assert e.code == "TEST.FAULT_INJECTED", e.to_wire()
    assert (e.details["chain"], e.details["flow"]) == (chain, flow)
    await consistent(api)


async def test_every_attach_and_detach_step_rolls_back(cloud: Cloud) -> None:
    api = cloud.api
    chains = (await api("GetFlowChains"))["chains"]
    assert chains["volume-attach"] == [
        "volume-attach-instantiate",
        "volume-attach-record",
        "volume-attach-on-hypervisor",
    ]
    assert chains["volume-detach"] == ["volume-detach-on-hypervisor", "volume-detach-record"]
    vm = await cloud.vm("faulty-attach")
    vol = (await api("CreateDataVolume", name="data-f", diskSize=GiB))["inventory"]
    before = await volume_state(cloud, vol["uuid"], vm)
    assert before["volume"]["status"] == "NotInstantiated"
    for flow in chains["volume-attach"]:
        for when in ("before", "after"):
            await failing(
                cloud, "volume-attach", flow, when, "AttachDataVolumeToVm",
                volumeUuid=vol["uuid"], vmInstanceUuid=vm["uuid"],
            )  # fmt: skip
            assert await volume_state(cloud, vol["uuid"], vm) == before, (flow, when)
    await api("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=vm["uuid"])
    attached = await volume_state(cloud, vol["uuid"], vm)
    assert attached["volume"]["deviceId"] == 1 and vol["uuid"] in attached["plugged"]
    for flow in chains["volume-detach"]:
        for when in ("before", "after"):
            await failing(
                cloud, "volume-detach", flow, when, "DetachDataVolumeFromVm", uuid=vol["uuid"]
            )
            assert await volume_state(cloud, vol["uuid"], vm) == attached, (flow, when)
    await api("DetachDataVolumeFromVm", uuid=vol["uuid"])
    await api("DeleteDataVolume", uuid=vol["uuid"])
    await api("DestroyVmInstance", uuid=vm["uuid"])


class Died(BaseException):
    """Stands for the process ending at a crash point (nothing catches it, nothing rolls
    back): the chain's record stays as the crash would leave it."""


def _die(reason: str) -> None:
    raise Died(reason)


async def test_interrupted_attach_and_detach_are_finished_or_rolled_back(cloud: Cloud) -> None:
    """The recovery a restarted node runs, in-process: cut every step before and after,
    then recover; the hypervisor (kept here, unlike a restart) agrees with the database."""
    api, node = cloud.api, cloud.api.node
    points = CrashPoints(node, exit_fn=_die)
    vm = await cloud.vm("interrupted")
    chains = (await api("GetFlowChains"))["chains"]
    try:
        for chain, api_name in (
            ("volume-attach", "AttachDataVolumeToVm"),
            ("volume-detach", "DetachDataVolumeFromVm"),
        ):
            flows = chains[chain]
            for flow in flows:
                for when in ("before", "after"):
                    vol = await api("CreateDataVolume", name=f"cut-{flow}-{when}", diskSize=GiB)
                    uuid = vol["inventory"]["uuid"]
                    if chain == "volume-attach":
                        args = {"volumeUuid": uuid, "vmInstanceUuid": vm["uuid"]}
                    else:
                        await api(
                            "AttachDataVolumeToVm", volumeUuid=uuid, vmInstanceUuid=vm["uuid"]
                        )
                        args = {"uuid": uuid}
                    before = await volume_state(cloud, uuid, vm)
                    points.arm(CrashPlan(chain, flow, when))
                    with pytest.raises(Died):
                        await api(api_name, **args)
                    settled = await recover(node)
                    finished = flow == flows[-1] and when == "after"
                    assert [(r.chain, r.outcome) for r in settled] == [
                        (chain, "Done" if finished else "RolledBack")
                    ], (flow, when)
                    after = await volume_state(cloud, uuid, vm)
                    if not finished:
                        assert after == before, (chain, flow, when)
                    attached = after["volume"]["vmInstanceUuid"] is not None
                    assert attached == (uuid in after["plugged"]), (chain, flow, when, after)
                    assert attached == ((chain == "volume-attach") == finished)
                    job = await api(
                        "QueryJob", conditions=[f"name={api_name}"], sortBy="createDate",
                        sortDirection="desc", limit=1,
                    )  # fmt: skip
                    state = job["inventories"][0]["state"]
                    assert state == ("Succeeded" if finished else "Interrupted"), (flow, when)
                    await consistent(api)
                    await api("DeleteDataVolume", uuid=uuid)
    finally:
        node.flows.listeners.remove(points.on_flow)
    await api("DestroyVmInstance", uuid=vm["uuid"])
