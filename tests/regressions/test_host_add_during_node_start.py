"""Regression: a host added while its node was still starting was rolled back under it.

``zmn start`` returns as soon as the API answers, and the API answered from the moment the
socket was bound, before ``Node.start`` had started the services. The host service's start
settles the ``host-add`` runs this node left open (:func:`zmn.services.host.flows.recover`,
meant for runs of a previous life); an ``AddSimulatorHost`` that came in meanwhile had a
``Running`` record of this node too, so start-up recovery undid it while it ran: the
simulator record was forgotten and the host row deleted, and the add failed with
``SIMULATOR.NOT_CONNECTED`` in ``host-sync-capacity``. The benchmark's ``cluster`` family
builds its cloud right after ``zmn start`` on a MariaDB + RabbitMQ node (a slower start), and
crashed that way under load.

Now a call that arrives while the node starts waits for the start to finish, and recovery
never touches a run this process is executing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import client_for
from zmn.core.config import BootConfig
from zmn.core.db import Base
from zmn.core.flow import FlowContext
from zmn.core.node import Node
from zmn.core.recovery import ChainRecovery, recover_chains
from zmn.server import ApiServer
from zmn.services.host.service import HostService
from zmn.services.host.simulator import SimulatorHostType

GiB = 1024**3


async def test_a_host_added_while_the_node_starts_is_not_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    node = Node(BootConfig.load(home, env={}))
    node.load_services()
    Base.metadata.create_all(node.db.engine)
    server = ApiServer(node)

    hold = asyncio.Event()  # the host service's start waits for it (a slow start)
    started = asyncio.Event()  # Node.start returned
    real_start, real_facts = HostService.start, SimulatorHostType.facts

    async def slow_start(self: HostService) -> None:
        await hold.wait()
        await real_start(self)

    async def facts_after_start(self: SimulatorHostType, host: Any) -> Any:
        # the capacity step of the add runs only once the node finished starting; on the old
        # code start-up recovery had rolled the add back by then
        await started.wait()
        return await real_facts(self, host)

    monkeypatch.setattr(HostService, "start", slow_start)
    monkeypatch.setattr(SimulatorHostType, "facts", facts_after_start)

    await server.start()

    async def start_node() -> None:
        await node.start()
        started.set()

    starting = asyncio.create_task(start_node())
    try:
        async with client_for(server) as client:

            async def add() -> Any:
                zone = (await client.call("CreateZone", {"name": "z1"}))["inventory"]
                cluster = (
                    await client.call(
                        "CreateCluster",
                        {"name": "c1", "zoneUuid": zone["uuid"], "hypervisorType": "Simulator"},
                    )
                )["inventory"]
                return (
                    await client.call(
                        "AddSimulatorHost",
                        {
                            "name": "h1",
                            "managementIp": "10.0.0.1",
                            "clusterUuid": cluster["uuid"],
                            "cpuCapacity": 8,
                            "memoryCapacity": 16 * GiB,
                        },
                    )
                )["inventory"]

            adding = asyncio.create_task(add())
            await asyncio.sleep(0.5)  # the calls are in (old code: the add is at its capacity step)
            hold.set()
            await asyncio.wait_for(starting, 30)
            host = await asyncio.wait_for(adding, 30)

            assert host["status"] == "Connected"
            assert host["totalCpuCapacity"] == 8
            sim = node.services["host"].types.get("Simulator")  # type: ignore[attr-defined]
            assert host["uuid"] in sim.hypervisor.hosts
            found = await client.call("QueryHost", {"conditions": [f"uuid={host['uuid']}"]})
            assert [h["status"] for h in found["inventories"]] == ["Connected"]
    finally:
        hold.set()
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await server.stop()
        await node.stop(grace=5)


async def test_recovery_leaves_a_run_this_process_executes_alone(tmp_path: Path) -> None:
    """The second guard: whatever lets a call in early, a live run is not "interrupted"."""
    from tests.support.inproc import Api, running_node

    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        zone = (await api("CreateZone", name="z1"))["inventory"]
        cluster = (
            await api("CreateCluster", name="c1", zoneUuid=zone["uuid"], hypervisorType="Simulator")
        )["inventory"]
        sim = node.services["host"].types.get("Simulator")  # type: ignore[attr-defined]
        in_sync, go_on = asyncio.Event(), asyncio.Event()
        real_facts = sim.facts

        async def facts(host: Any) -> Any:
            in_sync.set()
            await go_on.wait()
            return await real_facts(host)

        sim.facts = facts
        adding = asyncio.create_task(
            api(
                "AddSimulatorHost",
                name="h1",
                managementIp="10.0.0.1",
                clusterUuid=cluster["uuid"],
                cpuCapacity=8,
                memoryCapacity=16 * GiB,
            )
        )
        await asyncio.wait_for(in_sync.wait(), 10)

        async def finished(ctx: FlowContext) -> dict[str, Any]:
            raise AssertionError("a live run must not be finished by recovery")

        settled = await recover_chains(node, {"host-add": ChainRecovery(finish=finished)})
        go_on.set()
        host = (await asyncio.wait_for(adding, 10))["inventory"]

        assert settled == []
        assert host["status"] == "Connected"
