"""The VM life cycle on simulator hosts: create, power operations, migrate, destroy policies,
state table, tags, idempotency, events, serialization, host maintenance, NICs.

One node per module (the cloud is built once); every test ends with CheckConsistency clean.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, client_for, running_node
from tests.support.vmcloud import Cloud, GiB, TiB, build_cloud, consistent
from zmn.api.errors import Conflict, InvalidArgument, InvalidState, OperationFailed, ZmnError
from zmn.core.bus import Event

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> AsyncIterator[Cloud]:
    # db_engine: one cloud per engine when ZMN_TEST_DB selects several (tests/conftest.py)
    home = tmp_path_factory.mktemp("vm-lifecycle") / "home"
    async with running_node(home, conf={"testing.faults": "true"}) as (node, server):
        c = await build_cloud(Api(node))
        c.server = server
        yield c


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def _ends_consistent(cloud: Cloud) -> AsyncIterator[None]:
    yield
    await consistent(cloud.api)


@pytest.fixture
def events(cloud: Cloud) -> Iterator[list[Event]]:
    seen: list[Event] = []
    sub = cloud.api.node.bus.subscribe("/vm/**", seen.append)
    yield seen
    sub.cancel()


def sim(cloud: Cloud) -> Any:
    return cloud.api.node.services["host"].simulator  # type: ignore[attr-defined]


async def set_config(cloud: Cloud, name: str, value: str) -> None:
    await cloud.api("UpdateGlobalConfig", category="vm", name=name, value=value)


async def names(api: Api, query: str, *conditions: str) -> list[str]:
    result = await api(query, conditions=list(conditions))
    return sorted(inv["name"] for inv in result["inventories"])


async def test_create_instant_start(cloud: Cloud) -> None:
    api = cloud.api
    before = await cloud.host("h1")
    vm = await cloud.vm("web-1")
    assert vm["state"] == "Running" and vm["hostUuid"] == cloud["h1"]  # default: first by name
    assert vm["lastHostUuid"] == cloud["h1"] and vm["clusterUuid"] == cloud["cluster"]
    [nic] = vm["vmNics"]
    assert nic["l3NetworkUuid"] == cloud["l3"] and nic["ip"].startswith("10.0.0.")
    assert (nic["netmask"], nic["gateway"], nic["deviceId"]) == ("255.255.255.0", "10.0.0.1", 0)
    [root] = vm["allVolumes"]
    assert (root["type"], root["size"], root["deviceId"]) == ("Root", 10 * GiB, 0)
    assert root["uuid"] == vm["rootVolumeUuid"] and root["primaryStorageUuid"] == cloud["ps"]
    after = await cloud.host("h1")
    assert after["availableCpuCapacity"] == before["availableCpuCapacity"] - 1
    assert after["availableMemoryCapacity"] == before["availableMemoryCapacity"] - GiB
    running = sim(cloud).hosts[cloud["h1"]].vms[vm["uuid"]]
    assert running.state == "Running" and running.nics == {nic["uuid"]: nic["ip"]}
    # the create path builds the inventory with its own Core statements: the same as a query's
    [queried] = (await api("QueryVmInstance", conditions=[f"uuid={vm['uuid']}"]))["inventories"]
    assert queried == vm
    # joins through the VM, its NICs and its host, both ways
    assert await names(api, "QueryVmInstance", "vmNics.l3Network.l2Network.zone.name=z1") == [
        "web-1"
    ]
    assert await names(api, "QueryZone", "cluster.host.vmInstance.name=web-1") == ["z1"]
    assert await names(api, "QueryL3Network", "vmNic.vmInstance.state=Running") == ["l3"]
    assert await names(api, "QueryHost", "vmInstance.name=web-1") == ["h1"]
    assert await names(api, "QueryVmInstance", "allVolumes.type=Root", "name=web-1") == ["web-1"]
    assert await names(api, "QueryVmInstance", f"vmNics.ip={nic['ip']}") == ["web-1"]
    await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_create_stopped_takes_no_host_capacity(cloud: Cloud) -> None:
    before = [await cloud.host("h1"), await cloud.host("h2")]
    vm = await cloud.vm("cold-1", strategy="CreateStopped", dataDiskOfferingUuids=[cloud["d10"]])
    assert vm["state"] == "Stopped" and vm["hostUuid"] is None
    assert vm["clusterUuid"] == cloud["cluster"]
    assert [v["type"] for v in vm["allVolumes"]] == ["Root", "Data"]
    assert [await cloud.host("h1"), await cloud.host("h2")] == before
    started = (await cloud.api("StartVmInstance", uuid=vm["uuid"]))["inventory"]
    assert started["state"] == "Running" and started["hostUuid"] in (cloud["h1"], cloud["h2"])
    record = sim(cloud).hosts[started["hostUuid"]].vms[vm["uuid"]]
    assert sorted(record.volumes.values()) == [0, 1]
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])
    # the data volume survives its VM, detached
    data = (await cloud.api("QueryVolume", conditions=["name=DATA-for-cold-1-1"]))["inventories"]
    assert [(v["vmInstanceUuid"], v["status"]) for v in data] == [(None, "Ready")]
    await cloud.api("DeleteDataVolume", uuid=data[0]["uuid"])


async def test_power_operations(cloud: Cloud, events: list[Event]) -> None:
    api = cloud.api
    vm = await cloud.vm("power-1")
    uuid, host = vm["uuid"], vm["hostUuid"]
    record = sim(cloud).hosts[host].vms
    inv = (await api("StopVmInstance", uuid=uuid))["inventory"]
    assert (inv["state"], inv["hostUuid"], inv["lastHostUuid"]) == ("Stopped", None, host)
    assert uuid not in record  # a stopped VM is no longer defined on the host
    inv = (await api("StartVmInstance", uuid=uuid))["inventory"]
    assert (inv["state"], inv["hostUuid"]) == ("Running", host)  # its last host first
    assert (await api("RebootVmInstance", uuid=uuid))["inventory"]["state"] == "Running"
    assert (await api("PauseVmInstance", uuid=uuid))["inventory"]["state"] == "Paused"
    assert sim(cloud).hosts[host].vms[uuid].state == "Paused"
    assert (await api("ResumeVmInstance", uuid=uuid))["inventory"]["state"] == "Running"
    await api("PauseVmInstance", uuid=uuid)
    inv = (await api("StopVmInstance", uuid=uuid, type="cold"))["inventory"]
    assert inv["state"] == "Stopped"
    changes = [
        (e.data["oldState"], e.data["newState"]) for e in events if e.path == "/vm/state/change"
    ]
    assert changes[-14:] == [
        ("Running", "Stopping"),
        ("Stopping", "Stopped"),
        ("Stopped", "Starting"),
        ("Starting", "Running"),
        ("Running", "Rebooting"),
        ("Rebooting", "Running"),
        ("Running", "Pausing"),
        ("Pausing", "Paused"),
        ("Paused", "Resuming"),
        ("Resuming", "Running"),
        ("Running", "Pausing"),
        ("Pausing", "Paused"),
        ("Paused", "Stopping"),
        ("Stopping", "Stopped"),
    ]
    last = [e for e in events if e.path == "/vm/state/change"][-1]
    assert last.data["inventory"]["uuid"] == uuid and last.data["newState"] == "Stopped"
    assert last.data["inventory"]["vmNics"][0]["ip"] == vm["vmNics"][0]["ip"]
    await api("DestroyVmInstance", uuid=uuid)


async def test_operations_not_allowed_name_the_state(cloud: Cloud) -> None:
    api = cloud.api
    vm = await cloud.vm("strict-1", strategy="CreateStopped")
    for op in ("PauseVmInstance", "ResumeVmInstance", "RebootVmInstance", "RecoverVmInstance"):
        with pytest.raises(InvalidState) as err:
            await api(op, uuid=vm["uuid"])
        assert err.value.code == "VM_INSTANCE.INVALID_STATE"
        assert "Stopped" in err.value.message and err.value.details["state"] == "Stopped"
        assert err.value.exit_status == 4
    with pytest.raises(InvalidState):
        await api("MigrateVm", vmInstanceUuid=vm["uuid"])
    with pytest.raises(InvalidState) as err:
        await api("ExpungeVmInstance", uuid=vm["uuid"])
    assert err.value.details["allowedStates"] == ["Destroyed"]
    await api("StartVmInstance", uuid=vm["uuid"])
    with pytest.raises(InvalidState) as err:
        await api("StartVmInstance", uuid=vm["uuid"])
    assert "in state Running" in err.value.message
    # a Running VM grows only up to the hot-add maxima fixed at its start (none by default)
    with pytest.raises(InvalidState) as err:
        await api("UpdateVmInstance", uuid=vm["uuid"], cpuNum=vm["cpuNum"] + 1)
    assert err.value.code == "VM_INSTANCE.HOTPLUG_LIMIT"
    assert "vm/cpu.hotplugMax" in err.value.message
    with pytest.raises(InvalidState) as err:
        await api("UpdateVmInstance", uuid=vm["uuid"], memorySize=vm["memorySize"] // 2)
    assert err.value.code == "VM_INSTANCE.HOTPLUG_SHRINK" and "stop" in err.value.message
    await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_migrate(cloud: Cloud) -> None:
    api = cloud.api
    vm = await cloud.vm("mover-1")
    source = vm["hostUuid"]
    target = cloud["h2"] if source == cloud["h1"] else cloud["h1"]
    free = (await api("QueryHost", conditions=[f"uuid={target}"]))["inventories"][0]
    with pytest.raises(InvalidArgument) as err:
        await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=source)
    assert err.value.code == "VM_INSTANCE.SAME_HOST"
    inv = (await api("MigrateVm", vmInstanceUuid="mover-1"))["inventory"]
    assert (inv["hostUuid"], inv["lastHostUuid"], inv["state"]) == (target, source, "Running")
    assert vm["uuid"] in sim(cloud).hosts[target].vms
    assert vm["uuid"] not in sim(cloud).hosts[source].vms
    now = (await api("QueryHost", conditions=[f"uuid={target}"]))["inventories"][0]
    assert now["availableMemoryCapacity"] == free["availableMemoryCapacity"] - GiB
    back = (await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=source))["inventory"]
    assert back["hostUuid"] == source
    await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_deletion_policies(cloud: Cloud) -> None:
    api = cloud.api
    baseline = {t: await cloud.count(t) for t in ("VmNic", "UsedIp", "Volume")}
    # Direct (the default): destroyed and expunged at once
    vm = await cloud.vm("gone-1")
    assert await api("DestroyVmInstance", uuid=vm["uuid"]) == {}
    assert await cloud.count("VmInstance", f"uuid={vm['uuid']}") == 0
    assert {t: await cloud.count(t) for t in baseline} == baseline
    # Delay: kept Destroyed (NIC and address kept), recoverable, then reaped
    await set_config(cloud, "deletionPolicy", "Delay")
    try:
        vm = await cloud.vm("kept-1")
        ip = vm["vmNics"][0]["ip"]
        inv = (await api("DestroyVmInstance", uuid=vm["uuid"]))["inventory"]
        assert (inv["state"], inv["hostUuid"]) == ("Destroyed", None)
        assert vm["uuid"] not in sim(cloud).hosts[vm["hostUuid"]].vms
        assert inv["vmNics"][0]["ip"] == ip
        inv = (await api("RecoverVmInstance", uuid=vm["uuid"]))["inventory"]
        assert inv["state"] == "Stopped"
        inv = (await api("StartVmInstance", uuid=vm["uuid"]))["inventory"]
        assert inv["state"] == "Running" and inv["vmNics"][0]["ip"] == ip
        await api("DestroyVmInstance", uuid=vm["uuid"])
        reaper = api.node.services["vm"].reaper  # type: ignore[attr-defined]
        assert await reaper.run_once() == 0  # the period (a day) is not over
        await set_config(cloud, "expungePeriod", "0")
        assert await reaper.run_once() == 1
        assert await cloud.count("VmInstance", f"uuid={vm['uuid']}") == 0
        # Never: kept until ExpungeVmInstance, whatever the period
        await set_config(cloud, "deletionPolicy", "Never")
        vm = await cloud.vm("kept-2")
        await api("DestroyVmInstance", uuid=vm["uuid"])
        assert await reaper.run_once() == 0
        assert (await cloud.get_vm(vm["uuid"]))["state"] == "Destroyed"
        assert await api("ExpungeVmInstance", uuid="kept-2") == {}
        assert {t: await cloud.count(t) for t in baseline} == baseline
    finally:
        await set_config(cloud, "deletionPolicy", "Direct")
        await set_config(cloud, "expungePeriod", "86400")


async def test_idempotent_resource_uuid(cloud: Cloud) -> None:
    uuid = "ab" * 16
    first, second = await asyncio.gather(
        cloud.vm("twin-1", resourceUuid=uuid), cloud.vm("twin-1", resourceUuid=uuid)
    )
    again = await cloud.vm("twin-1", resourceUuid=uuid)
    assert first["uuid"] == second["uuid"] == again["uuid"] == uuid
    assert await cloud.count("VmInstance", "name=twin-1") == 1
    assert await cloud.count("VmNic", f"vmInstanceUuid={uuid}") == 1
    await cloud.api("DestroyVmInstance", uuid=uuid)


async def test_hostname_and_static_ip_tags(cloud: Cloud) -> None:
    api = cloud.api
    l3 = cloud["l3"]
    vm = await cloud.vm("tagged-1", systemTags=["hostname::web1", f"staticIp::{l3}::10.0.0.150"])
    assert vm["vmNics"][0]["ip"] == "10.0.0.150"
    found = await api("QueryVmInstance", conditions=["__systemTag__=hostname::web1"])
    assert [v["name"] for v in found["inventories"]] == ["tagged-1"]
    counts = {t: await cloud.count(t) for t in ("VmInstance", "VmNic", "UsedIp", "Volume")}
    with pytest.raises(Conflict) as err:
        await cloud.vm("tagged-2", systemTags=[f"staticIp::{l3}::10.0.0.150"])
    assert err.value.code == "L3.IP_IN_USE" and err.value.details["flow"] == "vm-allocate-nics"
    with pytest.raises(InvalidArgument) as bad:
        await cloud.vm("tagged-3", systemTags=[f"staticIp::{l3}::10.9.9.9"])
    assert bad.value.code == "L3.IP_NOT_IN_RANGE"
    with pytest.raises(InvalidArgument) as other:
        await cloud.vm("tagged-4", systemTags=[f"staticIp::{'c' * 32}::10.0.0.151"])
    assert other.value.code == "VM_INSTANCE.STATIC_IP_L3"
    with pytest.raises(InvalidArgument):
        await cloud.vm("tagged-5", systemTags=["hostname::-bad"])
    assert {t: await cloud.count(t) for t in counts} == counts
    await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_vm_larger_than_any_host_leaves_nothing(cloud: Cloud) -> None:
    counts = {t: await cloud.count(t) for t in ("VmInstance", "VmNic", "UsedIp", "Volume")}
    hosts = [await cloud.host("h1"), await cloud.host("h2")]
    with pytest.raises(OperationFailed) as err:
        await cloud.vm("huge-1", cpuNum=1, memorySize=TiB)
    assert err.value.code == "HOST.ALLOCATION_FAILED"
    assert err.value.details["flow"] == "vm-allocate-host"
    assert err.value.details["filter"] == "capacity"
    assert "vm-allocate-host: no host can take the VM" in err.value.message
    assert {t: await cloud.count(t) for t in counts} == counts
    assert [await cloud.host("h1"), await cloud.host("h2")] == hosts


async def test_one_queue_per_vm_runs_operations_in_order(cloud: Cloud, events: list[Event]) -> None:
    api = cloud.api
    vm = await cloud.vm("queued-1")
    uuid = vm["uuid"]
    await api("SimulatorInjectFailure", hostUuid=vm["hostUuid"], operation="stop", latency=1.0)
    stop = asyncio.ensure_future(api("StopVmInstance", uuid=uuid))
    await asyncio.sleep(0.05)
    start = asyncio.ensure_future(api("StartVmInstance", uuid=uuid))
    await asyncio.sleep(0.05)
    queues = {q["signature"]: q for q in (await api("GetTaskQueues"))["queues"]}
    queue = queues[f"vm:{uuid}"]
    assert (queue["level"], queue["running"], queue["pending"]) == (1, 1, 1)
    assert queue["runningTasks"] == ["StopVmInstance"]
    assert queue["pendingTasks"] == ["StartVmInstance"]
    await stop
    assert (await start)["inventory"]["state"] == "Running"
    mine = [
        e.data["newState"]
        for e in events
        if e.path == "/vm/state/change" and e.data["uuid"] == uuid
    ]
    assert mine[-4:] == ["Stopping", "Stopped", "Starting", "Running"]
    await api("DestroyVmInstance", uuid=uuid)


async def test_host_maintenance_moves_or_stops_vms(cloud: Cloud) -> None:
    api = cloud.api
    a = await cloud.vm("maint-1", hostUuid=cloud["h1"])
    b = await cloud.vm("maint-2", hostUuid=cloud["h1"], strategy="CreateStopped")
    inv = (await api("ChangeHostState", uuid=cloud["h1"], stateEvent="maintain"))["inventory"]
    assert inv["state"] == "Maintenance"
    moved = await cloud.get_vm(a["uuid"])
    assert (moved["state"], moved["hostUuid"]) == ("Running", cloud["h2"])
    assert (await cloud.get_vm(b["uuid"]))["state"] == "Stopped"
    with pytest.raises(OperationFailed):  # no host of the cluster but h2 takes new VMs now
        await cloud.vm("maint-3", hostUuid=cloud["h1"])
    await api("ChangeHostState", uuid=cloud["h1"], stateEvent="enable")
    # policy Migrate: a VM that cannot move fails the maintenance; the host goes back
    await api("MigrateVm", vmInstanceUuid=a["uuid"], hostUuid=cloud["h1"])
    await api("ChangeHostState", uuid=cloud["h2"], stateEvent="disable")
    await set_config(cloud, "hostMaintenance.policy", "Migrate")
    try:
        with pytest.raises(OperationFailed) as err:
            await api("ChangeHostState", uuid=cloud["h1"], stateEvent="maintain")
        assert err.value.code == "HOST.ALLOCATION_FAILED"
        assert (await cloud.host("h1"))["state"] == "Enabled"
        assert (await cloud.get_vm(a["uuid"]))["state"] == "Running"
        # MigrateOrStop (the default): it is stopped instead
        await set_config(cloud, "hostMaintenance.policy", "MigrateOrStop")
        await api("ChangeHostState", uuid=cloud["h1"], stateEvent="maintain")
        stopped = await cloud.get_vm(a["uuid"])
        assert (stopped["state"], stopped["hostUuid"], stopped["lastHostUuid"]) == (
            "Stopped",
            None,
            cloud["h1"],
        )
    finally:
        await set_config(cloud, "hostMaintenance.policy", "MigrateOrStop")
        await api("ChangeHostState", uuid=cloud["h1"], stateEvent="enable")
        await api("ChangeHostState", uuid=cloud["h2"], stateEvent="enable")
    # policy Stop: everything stops
    await api("StartVmInstance", uuid=a["uuid"], hostUuid=cloud["h1"])
    await set_config(cloud, "hostMaintenance.policy", "Stop")
    try:
        await api("ChangeHostState", uuid=cloud["h1"], stateEvent="maintain")
        assert (await cloud.get_vm(a["uuid"]))["state"] == "Stopped"
    finally:
        await set_config(cloud, "hostMaintenance.policy", "MigrateOrStop")
        await api("ChangeHostState", uuid=cloud["h1"], stateEvent="enable")
    for vm in (a, b):
        await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_update_and_change_offering(cloud: Cloud) -> None:
    api = cloud.api
    big = (await api("CreateInstanceOffering", name="big", cpuNum=4, memorySize=4 * GiB))[
        "inventory"
    ]
    vm = await cloud.vm("resize-1")
    inv = (await api("UpdateVmInstance", uuid=vm["uuid"], name="resize-2", description="x"))[
        "inventory"
    ]
    assert (inv["name"], inv["description"]) == ("resize-2", "x")
    await api("StopVmInstance", uuid=vm["uuid"])
    inv = (
        await api("ChangeInstanceOffering", vmInstanceUuid="resize-2", instanceOfferingUuid="big")
    )["inventory"]
    assert (inv["cpuNum"], inv["memorySize"], inv["instanceOfferingUuid"]) == (
        4,
        4 * GiB,
        big["uuid"],
    )
    inv = (await api("StartVmInstance", uuid=vm["uuid"]))["inventory"]
    assert sim(cloud).hosts[inv["hostUuid"]].vms[vm["uuid"]].memorySize == 4 * GiB
    await api("StopVmInstance", uuid=vm["uuid"])
    inv = (await api("UpdateVmInstance", uuid=vm["uuid"], cpuNum=2, memorySize=2 * GiB))[
        "inventory"
    ]
    assert (inv["cpuNum"], inv["memorySize"], inv["instanceOfferingUuid"]) == (2, 2 * GiB, None)
    await api("DestroyVmInstance", uuid=vm["uuid"])
    await api("DeleteInstanceOffering", uuid=big["uuid"])


async def test_attach_and_detach_l3(cloud: Cloud, events: list[Event]) -> None:
    api = cloud.api
    l3b = (await api("CreateL3Network", name="l3-b", l2NetworkUuid=cloud["l2"]))["inventory"]
    await api(
        "AddIpRange",
        name="rb",
        l3NetworkUuid=l3b["uuid"],
        startIp="192.168.0.10",
        endIp="192.168.0.20",
        netmask="255.255.255.0",
        gateway="192.168.0.1",
    )
    vm = await cloud.vm("nics-1")
    inv = (
        await api(
            "AttachL3NetworkToVm",
            vmInstanceUuid=vm["uuid"],
            l3NetworkUuid="l3-b",
            staticIp="192.168.0.15",
        )
    )["inventory"]
    second = inv["vmNics"][1]
    assert (second["deviceId"], second["ip"], second["l3NetworkUuid"]) == (
        1,
        "192.168.0.15",
        l3b["uuid"],
    )
    assert sim(cloud).hosts[vm["hostUuid"]].vms[vm["uuid"]].nics[second["uuid"]] == "192.168.0.15"
    with pytest.raises(Conflict):
        await api("AttachL3NetworkToVm", vmInstanceUuid=vm["uuid"], l3NetworkUuid="l3-b")
    await api("UpdateVmInstance", uuid=vm["uuid"], defaultL3NetworkUuid=l3b["uuid"])
    inv = (await api("DetachL3NetworkFromVm", vmNicUuid=second["uuid"]))["inventory"]
    assert [n["l3NetworkUuid"] for n in inv["vmNics"]] == [cloud["l3"]]
    assert inv["defaultL3NetworkUuid"] == cloud["l3"]
    assert await cloud.count("UsedIp", f"l3NetworkUuid={l3b['uuid']}") == 0
    assert any(e.path == "/vm/nic/detached" for e in events)
    # deleting the L3 network with cascade takes the NICs on it (and their addresses) along
    await api("AttachL3NetworkToVm", vmInstanceUuid=vm["uuid"], l3NetworkUuid="l3-b")
    with pytest.raises(Conflict):
        await api("DeleteL3Network", uuid=l3b["uuid"])
    await api("DeleteL3Network", uuid=l3b["uuid"], cascade=True)
    inv = await cloud.get_vm(vm["uuid"])
    assert [n["l3NetworkUuid"] for n in inv["vmNics"]] == [cloud["l3"]]
    assert len(sim(cloud).hosts[vm["hostUuid"]].vms[vm["uuid"]].nics) == 1
    await api("DestroyVmInstance", uuid=vm["uuid"])


async def test_host_delete_cascades_to_its_vms(cloud: Cloud) -> None:
    api = cloud.api
    extra = (
        await api(
            "AddSimulatorHost",
            name="h9",
            managementIp="10.0.9.9",
            clusterUuid=cloud["cluster"],
            cpuCapacity=4,
            memoryCapacity=8 * GiB,
        )
    )["inventory"]
    vm = await cloud.vm("on-h9", hostUuid=extra["uuid"])
    with pytest.raises(Conflict) as err:
        await api("DeleteHost", uuid=extra["uuid"])
    assert err.value.code == "HOST.HAS_DEPENDENTS"
    await api("DeleteHost", uuid=extra["uuid"], cascade=True)
    assert await cloud.count("VmInstance", f"uuid={vm['uuid']}") == 0
    assert await cloud.count("UsedIp", f"ip={vm['vmNics'][0]['ip']}") == 0


async def test_vm_creation_works_without_the_security_group_plugin(tmp_path: Path) -> None:
    conf = {"plugins.disabled": "securityGroup"}
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        assert "securityGroup" not in node.services
        c = await build_cloud(Api(node), hosts=((4, 8 * GiB),))
        vm = await c.vm("plain-1")
        assert vm["state"] == "Running"
        await Api(node)("DestroyVmInstance", uuid=vm["uuid"])
        await consistent(Api(node))


async def test_host_parallelism_comes_from_global_config(cloud: Cloud) -> None:
    api = cloud.api
    vms = [await cloud.vm(f"par-{i}", hostUuid=cloud["h2"]) for i in range(3)]
    await api("UpdateGlobalConfig", category="host", name="vmOperation.parallelism", value="2")
    try:
        await api("SimulatorInjectFailure", hostUuid="h2", operation="reboot", count=3, latency=5.0)
        reboots = [asyncio.ensure_future(api("RebootVmInstance", uuid=v["uuid"])) for v in vms]
        # the three reach the host's queue when their chains get there (slower on a loaded
        # machine); then two run and one waits for the 5 s the simulator holds each
        seen = None
        for _ in range(200):
            queues = {q["signature"]: q for q in (await api("GetTaskQueues"))["queues"]}
            queue = queues.get(f"host-vm:{cloud['h2']}")
            seen = queue and (queue["level"], queue["running"], queue["pending"])
            if seen == (2, 2, 1):
                break
            await asyncio.sleep(0.02)
        assert seen == (2, 2, 1)
        assert all(r["inventory"]["state"] == "Running" for r in await asyncio.gather(*reboots))
    finally:
        await api("UpdateGlobalConfig", category="host", name="vmOperation.parallelism", value="10")
    for v in vms:
        await api("DestroyVmInstance", uuid=v["uuid"])


async def test_allocator_strategies(cloud: Cloud) -> None:
    api = cloud.api
    # make h1 the busier host, then ask for the least used one
    busy = await cloud.vm("busy-1", hostUuid=cloud["h1"], cpuNum=1, memorySize=4 * GiB)
    await api("UpdateGlobalConfig", category="host", name="allocator.strategy", value="least-used")
    try:
        vm = await cloud.vm("spread-1", cpuNum=1, memorySize=GiB)
        assert vm["hostUuid"] == cloud["h2"]
        await api("DestroyVmInstance", uuid=vm["uuid"])
        await api("UpdateGlobalConfig", category="host", name="allocator.strategy", value="random")
        placed = {
            (await cloud.vm(f"rnd-{i}", cpuNum=1, memorySize=GiB))["hostUuid"] for i in range(8)
        }
        assert placed <= {cloud["h1"], cloud["h2"]}
        for i in range(8):
            await api("DestroyVmInstance", uuid=f"rnd-{i}")
    finally:
        await api("UpdateGlobalConfig", category="host", name="allocator.strategy", value="default")
    # the offering's strategy wins over the global one
    least = (
        await api(
            "CreateInstanceOffering",
            name="least",
            cpuNum=1,
            memorySize=GiB,
            allocatorStrategy="MinimumMemoryUsageHostAllocatorStrategy",
        )
    )["inventory"]
    vm = await cloud.vm("spread-2", instanceOfferingUuid=least["uuid"])
    assert vm["hostUuid"] == cloud["h2"]
    await api("DestroyVmInstance", uuid=vm["uuid"])
    await api("DestroyVmInstance", uuid=busy["uuid"])
    await api("DeleteInstanceOffering", uuid=least["uuid"])


async def test_zone_delete_cascades_through_vms_volumes_and_addresses(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        c = await build_cloud(api)
        await c.vm("a", dataDiskOfferingUuids=[c["d10"]])
        await c.vm("b", strategy="CreateStopped")
        await api(
            "CreateDataVolume", name="loose", diskOfferingUuid="d10", primaryStorageUuid="ps1"
        )
        with pytest.raises(Conflict):
            await api("DeleteZone", uuid=c["zone"])
        await api("DeleteZone", uuid=c["zone"], cascade=True)
        for type_name in ("VmInstance", "VmNic", "UsedIp", "Volume", "Host", "PrimaryStorage"):
            assert await c.count(type_name) == 0, type_name
        await consistent(api)


async def test_accounts_own_their_vms(cloud: Cloud) -> None:
    api = cloud.api
    sessions = {}
    for name in ("alice", "bob"):
        await api("CreateAccount", name=name, password=f"{name}-password")
        reply = await api("LogInByAccount", accountName=name, password=f"{name}-password")
        sessions[name] = reply["inventory"]["uuid"]
    args = {"imageUuid": "img", "instanceOfferingUuid": "small", "l3NetworkUuids": ["l3"]}
    async with (
        client_for(cloud.server, sessions["alice"]) as alice,
        client_for(cloud.server, sessions["bob"]) as bob,
    ):
        vm = (await alice.call("CreateVmInstance", {"name": "alice-vm", **args}))["inventory"]
        assert vm["state"] == "Running"
        mine = await alice.call("QueryVmInstance", {"conditions": ["name=alice-vm"]})
        assert [v["uuid"] for v in mine["inventories"]] == [vm["uuid"]]
        assert (await bob.call("QueryVmInstance", {"count": True}))["total"] == 0
        assert (await bob.call("QueryVmNic", {"count": True}))["total"] == 0
        assert (await bob.call("QueryVolume", {"count": True}))["total"] == 0
        assert (await alice.call("QueryVolume", {"count": True}))["total"] == 1
        with pytest.raises(ZmnError) as err:
            await bob.call("StopVmInstance", {"uuid": vm["uuid"]})
        assert err.value.code == "VM_INSTANCE.NOT_FOUND"
        await alice.call("DestroyVmInstance", {"uuid": "alice-vm"})
    for name in ("alice", "bob"):
        await api("DeleteAccount", uuid=name)
