"""Break every flow of vm-create, vm-start, vm-migrate and vm-destroy, before and after it
runs: the error names the step, the VM is back where it was, nothing leaks, and
CheckConsistency is clean. Then the simulator's own failure injection (fail, latency,
disconnect) through the admin API.

One node for the module; the flows are read from GetFlowChains, so a flow added to a chain
(by configuration or a plugin) is broken too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, build_cloud, consistent
from zmn.api.errors import OperationFailed, Unavailable, ZmnError
from zmn.services.vm.recovery import recover

pytestmark = pytest.mark.asyncio(loop_scope="module")

COUNTED = ("VmInstance", "VmNic", "UsedIp", "Volume")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    home = tmp_path_factory.mktemp("vm-faults") / "home"
    async with running_node(home, conf={"testing.faults": "true"}) as (node, _server):
        yield await build_cloud(Api(node))


async def chain(api: Api, name: str) -> list[str]:
    flows: list[str] = (await api("GetFlowChains"))["chains"][name]
    return flows


async def snapshot(cloud: Cloud) -> dict[str, Any]:
    """What must be exactly the same after a failed operation."""
    out: dict[str, Any] = {t: await cloud.count(t) for t in COUNTED}
    for key in ("h1", "h2"):
        h = await cloud.host(key)
        out[key] = (h["availableCpuCapacity"], h["availableMemoryCapacity"])
    ps = await cloud.api("QueryPrimaryStorage", conditions=[f"uuid={cloud['ps']}"])
    out["ps"] = ps["inventories"][0]["availableCapacity"]
    return out


async def broken(
    cloud: Cloud, chain_name: str, flow: str, when: str, api_name: str, **args: Any
) -> ZmnError:
    api = cloud.api
    await api("InjectFlowFault", chain=chain_name, flow=flow, when=when)
    with pytest.raises(ZmnError) as err:
        await api(api_name, **args)
    assert await api("ClearFlowFaults") == {"faults": []}
    e = err.value
    assert e.details["flow"] == flow and e.details["chain"] == chain_name, e.to_wire()
    assert e.code == "TEST.FAULT_INJECTED" and e.message.startswith(f"{flow}: ")
    await consistent(api)
    return e


async def test_every_create_flow_rolls_back(cloud: Cloud) -> None:
    flows = await chain(cloud.api, "vm-create")
    assert flows[0] == "vm-create-record" and "vm-allocate-nics" in flows
    before = await snapshot(cloud)
    for flow in flows:
        for when in ("before", "after"):
            await broken(
                cloud,
                "vm-create",
                flow,
                when,
                "CreateVmInstance",
                name=f"c-{flow}-{when}",
                imageUuid=cloud["image"],
                instanceOfferingUuid=cloud["small"],
                l3NetworkUuids=[cloud["l3"]],
                dataDiskOfferingUuids=[cloud["d10"]],
            )
            assert await snapshot(cloud) == before, (flow, when)
    # and the same chain creates a VM once nothing is broken
    vm = await cloud.vm("c-ok", dataDiskOfferingUuids=[cloud["d10"]])
    assert vm["state"] == "Running"
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])
    await cloud.api("DeleteDataVolume", uuid="DATA-for-c-ok-1")
    assert await snapshot(cloud) == before


async def test_every_start_flow_rolls_back(cloud: Cloud) -> None:
    vm = await cloud.vm("s-1", strategy="CreateStopped")
    before = await snapshot(cloud)
    for flow in await chain(cloud.api, "vm-start"):
        for when in ("before", "after"):
            await broken(cloud, "vm-start", flow, when, "StartVmInstance", uuid=vm["uuid"])
            inv = await cloud.get_vm(vm["uuid"])
            assert (inv["state"], inv["hostUuid"]) == ("Stopped", None), (flow, when)
            assert await snapshot(cloud) == before
            for host in ("h1", "h2"):
                assert (
                    vm["uuid"]
                    not in cloud.api.node.services["host"].simulator.hosts[cloud[host]].vms
                )  # type: ignore[attr-defined]
    await cloud.api("StartVmInstance", uuid=vm["uuid"])
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])


async def test_every_migrate_flow_rolls_back(cloud: Cloud) -> None:
    vm = await cloud.vm("m-1")
    source = vm["hostUuid"]
    sim = cloud.api.node.services["host"].simulator  # type: ignore[attr-defined]
    before = await snapshot(cloud)
    for flow in await chain(cloud.api, "vm-migrate"):
        for when in ("before", "after"):
            await broken(cloud, "vm-migrate", flow, when, "MigrateVm", vmInstanceUuid=vm["uuid"])
            inv = await cloud.get_vm(vm["uuid"])
            assert (inv["state"], inv["hostUuid"]) == ("Running", source), (flow, when)
            assert sim.hosts[source].vms[vm["uuid"]].state == "Running"
            assert await snapshot(cloud) == before
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])


async def test_every_destroy_flow_rolls_back(cloud: Cloud) -> None:
    vm = await cloud.vm("d-1")
    before = await snapshot(cloud)
    sim = cloud.api.node.services["host"].simulator  # type: ignore[attr-defined]
    for flow in await chain(cloud.api, "vm-destroy"):
        for when in ("before", "after"):
            await broken(cloud, "vm-destroy", flow, when, "DestroyVmInstance", uuid=vm["uuid"])
            inv = await cloud.get_vm(vm["uuid"])
            assert (inv["state"], inv["hostUuid"]) == ("Running", vm["hostUuid"]), (flow, when)
            assert sim.hosts[vm["hostUuid"]].vms[vm["uuid"]].state == "Running"
            assert await snapshot(cloud) == before
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])


async def test_a_failed_expunge_is_finished_by_the_next(cloud: Cloud) -> None:
    api = cloud.api
    before = await snapshot(cloud)
    await api("UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Never")
    try:
        vm = await cloud.vm("x-1")
        await api("DestroyVmInstance", uuid=vm["uuid"])
        for flow in await chain(api, "vm-expunge"):
            await broken(cloud, "vm-expunge", flow, "after", "ExpungeVmInstance", uuid=vm["uuid"])
            assert (await cloud.get_vm(vm["uuid"]))["state"] == "Destroyed"
            break
        await api("ExpungeVmInstance", uuid=vm["uuid"])
        assert await snapshot(cloud) == before
    finally:
        await api("UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Direct")
    await consistent(api)


async def test_simulator_failures_latency_and_disconnect(cloud: Cloud) -> None:
    api = cloud.api
    before = await snapshot(cloud)
    # the next start on h1 fails: create rolls back and names the step
    await api("SimulatorInjectFailure", hostUuid="h1", operation="start", message="no memory")
    with pytest.raises(OperationFailed) as err:
        await cloud.vm("sim-1", hostUuid=cloud["h1"])
    assert err.value.code == "SIMULATOR.INJECTED_FAILURE"
    assert err.value.details["flow"] == "vm-instantiate" and "no memory" in err.value.message
    assert await snapshot(cloud) == before
    await consistent(api)
    # only once (count=1): the same create now works
    vm = await cloud.vm("sim-1", hostUuid=cloud["h1"])
    # latency alone does not fail
    await api("SimulatorInjectFailure", hostUuid="h1", operation="reboot", latency=0.05)
    assert (await api("RebootVmInstance", uuid=vm["uuid"]))["inventory"]["state"] == "Running"
    # a stop that fails leaves the VM running where it was
    await api("SimulatorInjectFailure", hostUuid="h1", operation="stop")
    with pytest.raises(OperationFailed):
        await api("StopVmInstance", uuid=vm["uuid"])
    assert (await cloud.get_vm(vm["uuid"]))["state"] == "Running"
    await consistent(api)
    # the host drops off during a reboot: Unavailable, host Disconnected, no new VMs there
    await api("SimulatorInjectFailure", hostUuid="h1", operation="reboot", disconnect=True)
    with pytest.raises(Unavailable) as down:
        await api("RebootVmInstance", uuid=vm["uuid"])
    assert down.value.code == "HOST.NOT_CONNECTED"
    assert (await cloud.host("h1"))["status"] == "Disconnected"
    with pytest.raises(OperationFailed) as nohost:
        await cloud.vm("sim-2", hostUuid=cloud["h1"])
    assert nohost.value.details["filter"] == "state"
    state = (await api("GetSimulatorHostState", uuid="h1"))["host"]
    assert state["connected"] is False
    await api("ReconnectHost", uuid="h1")
    assert (await cloud.host("h1"))["status"] == "Connected"
    await consistent(api)
    # disconnect right now, without an operation
    await api("SimulatorInjectFailure", hostUuid="h1", disconnect=True)
    assert (await cloud.host("h1"))["status"] == "Disconnected"
    await api("ReconnectHost", uuid="h1")
    await api("SimulatorClearFailures")
    await api("DestroyVmInstance", uuid=vm["uuid"])
    assert await snapshot(cloud) == before
    await consistent(api)


async def test_a_create_cut_short_by_the_node_stopping_is_rolled_back_at_start(
    cloud: Cloud,
) -> None:
    """The job is cancelled mid-chain (as when the node stops); start-up recovery undoes it."""
    api = cloud.api
    node = api.node
    before = await snapshot(cloud)
    await api("SimulatorInjectFailure", hostUuid="h1", operation="start", latency=5, fail=False)
    args = {
        "name": "crash-1",
        "imageUuid": cloud["image"],
        "instanceOfferingUuid": cloud["small"],
        "l3NetworkUuids": [cloud["l3"]],
        "hostUuid": cloud["h1"],
    }
    _, job = await node.execute("CreateVmInstance", args, peer_admin=True, wait=False)
    assert job is not None
    for _ in range(200):
        rows = (await api("QueryVmInstance", conditions=["name=crash-1"]))["inventories"]
        if rows and rows[0]["state"] == "Starting":
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the VM never reached Starting")
    task = node.jobs.tasks[job]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (await api("GetJob", uuid=job))["inventory"]["state"] == "Interrupted"
    checks = {v["check"] for v in (await api("CheckConsistency"))["violations"]}
    assert "transitional-state-without-job" in checks
    assert await recover(node) == 0  # the VM itself is gone with the rollback
    assert await snapshot(cloud) == before
    await api("SimulatorClearFailures")
    await consistent(api)
