"""Migration API semantics on simulator hosts: candidate hosts, refusals, evacuating maintenance.

``GetVmMigrationCandidateHosts`` offers exactly the hosts ``MigrateVm`` would accept (another
Enabled, Connected host of the VM's cluster with room), a refused migration leaves the VM and
every host's capacity as they were, and ``ChangeHostState stateEvent=maintain`` is a job whose
progress names one step per VM; leaving maintenance brings nothing back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.integration.test_zcli import Zcli
from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, GiB, build_cloud, consistent
from zmn.api.errors import InvalidArgument, OperationFailed
from zmn.core.bus import Event
from zmn.core.flow import FlowContext
from zmn.core.service import Call
from zmn.services.vm.flows.migrate import MigrateOnHypervisor

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    home = tmp_path_factory.mktemp("vm-migration") / "home"
    async with running_node(home) as (node, server):
        # h3 has room for one 1 GiB VM only
        cloud = await build_cloud(Api(node), hosts=((8, 16 * GiB), (8, 16 * GiB), (1, GiB)))
        cloud.zcli = Zcli(home.parent, node, server)  # type: ignore[attr-defined]
        yield cloud


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def _ends_consistent(cloud: Cloud) -> AsyncIterator[None]:
    yield
    await consistent(cloud.api)


async def candidates(cloud: Cloud, vm: dict[str, Any]) -> list[str]:
    result = await cloud.api("GetVmMigrationCandidateHosts", vmInstanceUuid=vm["uuid"])
    return [h["name"] for h in result["inventories"]]


async def capacities(cloud: Cloud) -> dict[str, tuple[int, int]]:
    hosts = (await cloud.api("QueryHost", conditions=[]))["inventories"]
    return {h["name"]: (h["availableCpuCapacity"], h["availableMemoryCapacity"]) for h in hosts}


async def test_candidates_are_the_hosts_migrate_accepts(cloud: Cloud) -> None:
    api = cloud.api
    vm = await cloud.vm("cand-1", hostUuid=cloud["h1"])
    # the other hosts with room, most free memory first; never the VM's own host
    assert await candidates(cloud, vm) == ["h2", "h3"]
    filler = await cloud.vm("cand-fill", hostUuid=cloud["h3"])  # h3 is now full
    assert await candidates(cloud, vm) == ["h2"]
    await api("ChangeHostState", uuid=cloud["h2"], stateEvent="disable")
    try:
        assert await candidates(cloud, vm) == []
        before = await capacities(cloud)
        # a full host and a disabled one are refused, naming why; nothing moved or reserved
        for target, reason in (("h3", "memory free"), ("h2", "Enabled and Connected")):
            with pytest.raises(OperationFailed) as err:
                await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=cloud[target])
            assert reason in err.value.message, err.value
        assert await capacities(cloud) == before
        got = await cloud.get_vm(vm["uuid"])
        assert (got["state"], got["hostUuid"]) == ("Running", cloud["h1"])
    finally:
        await api("ChangeHostState", uuid=cloud["h2"], stateEvent="enable")
    with pytest.raises(InvalidArgument) as same:
        await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=cloud["h1"])
    assert same.value.code == "VM_INSTANCE.SAME_HOST" and same.value.field == "hostUuid"
    # a stopped VM has no host and no candidates
    await api("StopVmInstance", uuid=vm["uuid"])
    assert await candidates(cloud, vm) == []
    for v in (vm, filler):
        await api("DestroyVmInstance", uuid=v["uuid"])


async def test_zcli_prints_the_candidates_as_hosts(cloud: Cloud) -> None:
    """The rows are hosts, though the verb is the VM's: host columns, not a VM's."""
    vm = await cloud.vm("cand-cli", hostUuid=cloud["h1"])
    zcli = cloud.zcli  # type: ignore[attr-defined]
    table = (await zcli.ok("vm", "migration-candidates", vm["name"])).out.splitlines()
    assert table[0].split()[:2] == ["uuid", "name"] and "managementIp" in table[0].split()
    assert "cpuNum" not in table[0].split()  # a VM's column
    assert sorted(line.split()[1] for line in table[2:]) == ["h2", "h3"]
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])


async def test_maintenance_is_a_job_with_one_step_per_vm(cloud: Cloud) -> None:
    api = cloud.api
    vms = [await cloud.vm(f"evac-{i}", hostUuid=cloud["h1"]) for i in range(3)]
    stopped = await cloud.vm("evac-stopped", hostUuid=cloud["h1"], strategy="CreateStopped")
    steps: list[str] = []

    def seen(e: Event) -> None:
        if e.data.get("name") == "ChangeHostState" and e.data.get("text"):
            steps.append(str(e.data["text"]))

    sub = api.node.bus.subscribe("/job/*", seen)
    try:
        inv = (await api("ChangeHostState", uuid=cloud["h1"], stateEvent="maintain"))["inventory"]
    finally:
        sub.cancel()
    assert inv["state"] == "Maintenance"
    on_h1 = (await api("QueryVmInstance", conditions=[f"hostUuid={cloud['h1']}"]))["inventories"]
    assert on_h1 == []
    for vm in vms:
        got = await cloud.get_vm(vm["uuid"])
        assert got["state"] == "Running" and got["hostUuid"] in (cloud["h2"], cloud["h3"])
        assert got["lastHostUuid"] == cloud["h1"]
    # the job's text: each VM's step (the migrations' own flow steps come in between)
    done = [s for s in steps if s.startswith("VM ") and not s.endswith("leaving the host")]
    assert [s.split(":")[0] for s in done] == [f"VM {i}/3 evac-{i - 1}" for i in (1, 2, 3)]
    assert all(": migrated to h" in s for s in done), done
    # leaving maintenance brings nothing back
    await api("ChangeHostState", uuid=cloud["h1"], stateEvent="enable")
    for vm in vms:
        assert (await cloud.get_vm(vm["uuid"]))["hostUuid"] != cloud["h1"]
    for vm in [*vms, stopped]:
        await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_undoing_a_migration_the_record_missed_brings_the_vm_back(cloud: Cloud) -> None:
    """Crash recovery undoes ``vm-migrate-on-hypervisor`` of a run cut while the hypervisor
    migrated: the record does not say the VM moved, but the target has it; the undo asks the
    target and migrates it back, so the VM runs where the record (and its network) says."""
    api = cloud.api
    node = api.node
    sim = node.services["host"].simulator  # type: ignore[attr-defined]
    vm = await cloud.vm("lost-1", hostUuid=cloud["h1"])
    data = {"vmUuid": vm["uuid"], "sourceHostUuid": cloud["h1"], "targetHostUuid": cloud["h2"]}
    ctx = FlowContext(Call(node, node.admin_principal(), "test"), data=dict(data))
    # a failed migration (the VM stayed): the undo finds nothing on the target, moves nothing
    await MigrateOnHypervisor().rollback(ctx)
    assert vm["uuid"] in sim.hosts[cloud["h1"]].vms
    # the hypervisor moved it, the node died before recording that: it comes back
    sim.migrate_vm(cloud["h1"], vm["uuid"], cloud["h2"])
    await MigrateOnHypervisor().rollback(FlowContext(ctx.call, data=dict(data)))
    assert vm["uuid"] in sim.hosts[cloud["h1"]].vms
    assert vm["uuid"] not in sim.hosts[cloud["h2"]].vms
    await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_the_reconciler_leaves_a_migration_targets_reservation_alone(cloud: Cloud) -> None:
    """While the hypervisor migrates, the target holds the VM's CPUs and memory but the VM
    still names the source: a reconciler pass then must not "repair" the target's capacity
    (the migration would leave it counted as free once the VM arrived)."""
    api = cloud.api
    vm = await cloud.vm("slow-1", hostUuid=cloud["h1"])
    before = await capacities(cloud)
    await api("SimulatorInjectFailure", hostUuid=cloud["h1"], operation="migrate", latency=4.0)
    moving = asyncio.create_task(api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=cloud["h2"]))
    deadline = asyncio.get_running_loop().time() + 60
    while (await capacities(cloud))["h2"] == before["h2"]:  # the target is reserved
        assert asyncio.get_running_loop().time() < deadline, "the migration never reserved h2"
        await asyncio.sleep(0.05)
    await api.node.services["vm"].reconciler.run_once()  # type: ignore[attr-defined]
    await moving
    after = await capacities(cloud)
    assert after["h2"] == (before["h2"][0] - 1, before["h2"][1] - GiB)
    assert after["h1"] == (before["h1"][0] + 1, before["h1"][1] + GiB)
    await api("DestroyVmInstance", uuid=vm["uuid"])
