"""Hosts: the host-add flow chain and its rollback, reconnect, ping tracking, maintenance."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.inproc import Api, running_node
from zmn.api.errors import InvalidState, OperationFailed
from zmn.core.models import FlowRecordVO, JobVO, TagVO
from zmn.core.service import Call
from zmn.services.host.hosttype import HostMaintenanceExtension
from zmn.services.host.simulator import SimulatorHypervisor

GiB = 1024**3
HOST = {
    "name": "h1",
    "managementIp": "10.0.0.11",
    "clusterUuid": "c1",
    "cpuCapacity": 32,
    "memoryCapacity": 64 * GiB,
}


@pytest.fixture
async def api(node_api: Api) -> Api:
    await node_api("CreateZone", name="z1")
    await node_api("CreateCluster", name="c1", zoneUuid="z1", hypervisorType="Simulator")
    return node_api


def sim(api: Api) -> SimulatorHypervisor:
    simulator: SimulatorHypervisor = api.node.services["host"].simulator  # type: ignore[attr-defined]
    return simulator


async def host(api: Api, name: str = "h1") -> dict[str, Any]:
    invs: list[dict[str, Any]] = (await api("QueryHost", conditions=[f"name={name}"]))[
        "inventories"
    ]
    return invs[0]


def flow_steps(api: Api) -> list[tuple[str, str, str]]:
    steps: list[tuple[str, str, str]] = []
    api.node.flows.listeners.append(lambda chain, flow, event: steps.append((chain, flow, event)))
    return steps


async def test_add_runs_the_host_add_chain_as_a_job(api: Api) -> None:
    steps = flow_steps(api)
    result, job_uuid = await api.node.execute("AddSimulatorHost", dict(HOST), peer_admin=True)
    assert job_uuid is not None and result["inventory"]["status"] == "Connected"
    assert [(f, e) for _, f, e in steps] == [
        ("host-record", "run"),
        ("host-record", "done"),
        ("host-connect", "run"),
        ("host-connect", "done"),
        ("host-sync-capacity", "run"),
        ("host-sync-capacity", "done"),
    ]
    with api.node.db.tx() as s:
        job = s.get(JobVO, job_uuid)
        assert job is not None and (job.state, job.progress, job.name) == (
            "Succeeded",
            100,
            "AddSimulatorHost",
        )
        record = s.scalar(select(FlowRecordVO).where(FlowRecordVO.jobUuid == job_uuid))
        assert record is not None and (record.chain, record.state) == ("host-add", "Done")
    chains = (await api("GetFlowChains"))["chains"]
    assert chains["host-add"] == ["host-record", "host-connect", "host-sync-capacity"]
    record = sim(api).hosts[result["inventory"]["uuid"]]
    assert (record.cpuNum, record.memoryCapacity, record.connected) == (32, 64 * GiB, True)


@pytest.mark.parametrize(
    ("operation", "failed_flow"), [("connect", "host-connect"), ("facts", "host-sync-capacity")]
)
async def test_failed_add_rolls_back(api: Api, operation: str, failed_flow: str) -> None:
    sim(api).inject(operation, "no route to host", host="10.0.0.11")
    steps = flow_steps(api)
    uuid = "ab" * 16
    with pytest.raises(OperationFailed) as failed:
        await api(
            "AddSimulatorHost",
            **HOST,
            resourceUuid=uuid,
            systemTags=["reservedMemory::1024"],
            userTags=["x"],
        )
    err = failed.value
    assert err.details["flow"] == failed_flow and err.details["chain"] == "host-add"
    assert "no route to host" in err.message
    if operation == "connect":
        assert (err.code, err.field) == ("HOST.CONNECT_FAILED", "managementIp")
    rollbacks = [f for _, f, e in steps if e == "rollback"]
    assert rollbacks == (
        ["host-record"] if operation == "connect" else ["host-connect", "host-record"]
    )
    assert (await api("QueryHost", count=True))["total"] == 0
    assert uuid not in sim(api).hosts
    with api.node.db.tx() as s:
        assert (
            s.scalar(select(func.count()).select_from(TagVO).where(TagVO.resourceUuid == uuid)) == 0
        )
        states = list(s.scalars(select(FlowRecordVO.state).where(FlowRecordVO.chain == "host-add")))
        assert states == ["RolledBack"]
    # the same add works once the host is reachable
    sim(api).clear()
    inv = (await api("AddSimulatorHost", **HOST, resourceUuid=uuid))["inventory"]
    assert inv["uuid"] == uuid and inv["status"] == "Connected"


async def test_reconnect_and_ping_tracking(api: Api) -> None:
    events: list[tuple[str, Any]] = []
    api.node.bus.subscribe("/host/**", lambda e: events.append((e.path, e.data.get("newState"))))
    inv = (await api("AddSimulatorHost", **HOST))["inventory"]
    uuid = inv["uuid"]
    tracker = api.node.services["host"].tracker  # type: ignore[attr-defined]
    api.node.global_config.set_cached("host", "ping.maxFailure", "2")

    sim(api).inject("ping", "timeout", host=uuid)
    await tracker.ping_all()
    assert (await host(api))["status"] == "Connected"  # one miss is tolerated
    await tracker.ping_all()
    assert (await host(api))["status"] == "Disconnected"
    await tracker.ping_all()  # still unreachable: stays Disconnected, no reconnect attempt
    assert (await host(api))["status"] == "Disconnected"
    sim(api).clear()
    await tracker.ping_all()  # answers again: reconnected
    assert (await host(api))["status"] == "Connected"
    assert [s for p, s in events if p == "/host/status/change"] == [
        "Connected",
        "Disconnected",
        "Connecting",
        "Connected",
    ]

    # ReconnectHost: a failure leaves it Disconnected and says why; then it works
    sim(api).inject("connect", "refused", host="10.0.0.11")
    with pytest.raises(OperationFailed) as failed:
        await api("ReconnectHost", uuid="h1")
    assert failed.value.code == "HOST.CONNECT_FAILED"
    assert (await host(api))["status"] == "Disconnected"
    sim(api).clear()
    assert (await api("ReconnectHost", uuid="h1"))["inventory"]["status"] == "Connected"

    # a node restart loses the simulator's records; reconnecting rebuilds them from the database
    sim(api).hosts.clear()
    await tracker.reconnect_all()
    assert sim(api).hosts[uuid].cpuNum == 32 and (await host(api))["status"] == "Connected"


async def test_boot_resumes_connected_hosts_and_reconnects_only_the_others(api: Api) -> None:
    uuids = {}
    for i in (1, 2, 3):
        inv = await api(
            "AddSimulatorHost", **{**HOST, "name": f"h{i}", "managementIp": f"10.0.0.1{i}"}
        )
        uuids[f"h{i}"] = inv["inventory"]["uuid"]
    with api.node.db.tx() as s:  # h3 was Disconnected when the node stopped
        row = s.get(api.node.resources.get("Host").model, uuids["h3"])
        assert row is not None
        row.status = "Disconnected"
    events: list[tuple[str, Any]] = []
    api.node.bus.subscribe(
        "/host/status/change", lambda e: events.append((e.data["uuid"], e.data["newState"]))
    )
    sim(api).hosts.clear()  # a restart: the simulator's records are gone
    sim(api).calls.clear()
    sim(api).inject("ping", "timeout", host=uuids["h2"])  # h2 does not answer at boot
    tracker = api.node.services["host"].tracker  # type: ignore[attr-defined]
    await tracker.boot()
    assert tracker.boot_summary["hosts"] == 3
    assert (tracker.boot_summary["resumed"], tracker.boot_summary["reconnected"]) == (1, 2)
    # h1 was pinged, not reconnected: no status change, no connect
    assert not [e for e in events if e[0] == uuids["h1"]]
    assert ("connect", uuids["h1"]) not in sim(api).calls and ("ping", uuids["h1"]) in sim(
        api
    ).calls
    for name in ("h2", "h3"):
        assert [st for u, st in events if u == uuids[name]] == ["Connecting", "Connected"]
    assert set(sim(api).hosts) == set(uuids.values())
    assert sim(api).hosts[uuids["h1"]].cpuNum == 32
    assert {h["status"] for h in (await api("QueryHost"))["inventories"]} == {"Connected"}


async def test_reconnect_keeps_used_capacity_and_honours_reserved_memory(api: Api) -> None:
    inv = (await api("AddSimulatorHost", **HOST, systemTags=["reservedMemory::2147483648"]))[
        "inventory"
    ]
    assert inv["availableMemoryCapacity"] == 62 * GiB
    # VMs took 4 vCPUs and 8 GiB (as the VM service will account them)
    with api.node.db.tx() as s:
        row = s.get(api.node.resources.get("Host").model, inv["uuid"])
        row.availableCpuCapacity -= 4
        row.availableMemoryCapacity -= 8 * GiB
    sim(api).hosts[inv["uuid"]].cpuNum = 48  # the host grew
    after = (await api("ReconnectHost", uuid="h1"))["inventory"]
    assert (after["totalCpuCapacity"], after["availableCpuCapacity"], after["cpuNum"]) == (
        48,
        44,
        48,
    )
    assert after["availableMemoryCapacity"] == 54 * GiB


async def test_maintenance(api: Api) -> None:
    await api("AddSimulatorHost", **HOST)
    events: list[Any] = []
    api.node.bus.subscribe("/host/state/change", lambda e: events.append(e.data["newState"]))
    inv = (await api("ChangeHostState", uuid="h1", stateEvent="maintain"))["inventory"]
    assert inv["state"] == "Maintenance" and events == ["PreMaintenance", "Maintenance"]
    assert (await api("ChangeHostState", uuid="h1", stateEvent="maintain"))["inventory"][
        "state"
    ] == "Maintenance"
    assert (await api("ChangeHostState", uuid="h1", stateEvent="disable"))["inventory"][
        "state"
    ] == "Disabled"

    class Refuse:
        async def prepare_maintenance(self, call: Call, host_uuid: str) -> None:
            raise OperationFailed("VM vm1 cannot migrate", code="VM.MIGRATION_FAILED")

    api.node.extensions.add(HostMaintenanceExtension, Refuse())  # type: ignore[type-abstract]
    with pytest.raises(OperationFailed) as refused:
        await api("ChangeHostState", uuid="h1", stateEvent="maintain")
    assert refused.value.code == "VM.MIGRATION_FAILED"
    assert (await host(api))["state"] == "Disabled"  # put back where it was


async def test_reconnect_refused_in_premaintenance(api: Api) -> None:
    inv = (await api("AddSimulatorHost", **HOST))["inventory"]
    with api.node.db.tx() as s:
        s.get(api.node.resources.get("Host").model, inv["uuid"]).state = "PreMaintenance"
    with pytest.raises(InvalidState) as refused:
        await api("ReconnectHost", uuid="h1")
    assert refused.value.code == "HOST.INVALID_STATE" and "PreMaintenance" in refused.value.message


async def test_delete_host_forgets_the_simulated_host(api: Api) -> None:
    inv = (await api("AddSimulatorHost", **HOST))["inventory"]
    assert inv["uuid"] in sim(api).hosts
    await api("DeleteHost", uuid="h1")
    assert inv["uuid"] not in sim(api).hosts
    assert (await api("QueryHost", count=True))["total"] == 0
    # its management IP can be used again
    await api("AddSimulatorHost", **HOST)


async def test_catalogue_lists_host_tables_configs_and_patterns(api: Api) -> None:
    catalogue = (await api("GetApiCatalogue"))["catalogue"]
    machines = catalogue["stateMachines"]
    assert {
        "Cluster",
        "Host",
        "HostStatus",
        "PrimaryStorage",
        "BackupStorage",
        "Image",
        "InstanceOffering",
        "DiskOffering",
        "L3Network",
    } <= set(machines)
    assert machines["Host"]["allowed"]["reconnect"] == ["Disabled", "Enabled", "Maintenance"]
    configs = {(c["category"], c["name"]): c for c in catalogue["globalConfigs"]}
    assert configs[("host", "ping.interval")]["default"] == "60"
    assert ("host", "ping.maxFailure") in configs and ("host", "connection.parallelism") in configs
    assert {"pattern": "reservedMemory::{size}", "resource": "Host"}.items() <= next(
        p for p in catalogue["tagPatterns"] if p["resource"] == "Host"
    ).items()
    apis = {a["name"]: a for a in catalogue["apis"]}
    assert (apis["AddSimulatorHost"]["verb"], apis["AddSimulatorHost"]["long"]) == ("add", True)
    assert (
        apis["AttachPrimaryStorageToCluster"]["verb"],
        apis["AttachPrimaryStorageToCluster"]["resource"],
    ) == (
        "attach",
        "PrimaryStorage",
    )
    for name in (
        "ChangeHostState",
        "DeleteIpRange",
        "ReconnectHost",
        "DetachL2NetworkFromCluster",
        "AddImage",
    ):
        assert apis[name]["admin"] is True, name
    joins = {r["name"]: {j["name"] for j in r["joins"]} for r in catalogue["resources"]}
    assert {
        "cluster",
        "host",
        "primaryStorage",
        "l2Network",
        "l3Network",
        "backupStorage",
    } <= joins["Zone"]
    assert {"zone", "host", "primaryStorage", "l2Network"} <= joins["Cluster"]


async def test_a_restarted_node_reconnects_its_hosts(tmp_path: Any) -> None:
    home = tmp_path / "home"
    async with running_node(home) as (node, _server):
        first = Api(node)
        await first("CreateZone", name="z1")
        await first("CreateCluster", name="c1", zoneUuid="z1", hypervisorType="Simulator")
        uuid = (await first("AddSimulatorHost", **HOST))["inventory"]["uuid"]
    async with running_node(home) as (node, _server):
        again = Api(node)
        for _ in range(100):  # the tracker reconnects in the background at start
            if uuid in sim(again).hosts and (await host(again))["status"] == "Connected":
                break
            await asyncio.sleep(0.05)
        assert sim(again).hosts[uuid].cpuNum == 32
        assert (await host(again))["status"] == "Connected"
