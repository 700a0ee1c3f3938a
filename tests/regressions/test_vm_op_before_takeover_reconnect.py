"""Regression: a VM operation that reached a host's new owner before its reconnect marked the
host Disconnected.

After a takeover (or a join) the node that now owns a simulator host holds no record of it
until its ``ReconnectHost`` rebuilds one. A ``HypervisorOp`` that got there first failed with
``SIMULATOR.NOT_CONNECTED`` and ``hypervisor_op`` marked the host Disconnected, possibly after
the reconnect had set it Connected; the 3-node e2e on PostgreSQL ended with one host
Disconnected. "No record on this node" says nothing about the host: the operation now connects
the host here and runs once more; a host whose own record says it dropped is still marked
Disconnected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import build_cloud, consistent
from zmn.api.errors import ZmnError


async def test_vm_op_on_a_host_not_yet_reconnected_here_connects_it(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api, hosts=((8, 16 * 1024**3),))
        running = await cloud.vm("before")
        host = cloud["h1"]
        sim = node.services["host"].types.get("Simulator")  # type: ignore[attr-defined]
        sim.hypervisor.forget(host)  # as on a node that took the host over, before reconnect

        vm = await cloud.vm("after")  # its start reaches this node first

        assert (vm["state"], vm["hostUuid"]) == ("Running", host)
        assert (await cloud.host("h1"))["status"] == "Connected"
        record = sim.hypervisor.hosts[host]
        assert {running["uuid"], vm["uuid"]} <= set(record.vms)  # the rebuilt record
        await consistent(api)


async def test_a_host_that_dropped_is_still_marked_disconnected(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api, hosts=((8, 16 * 1024**3),))
        host = cloud["h1"]
        sim = node.services["host"].types.get("Simulator")  # type: ignore[attr-defined]
        sim.hypervisor.hosts[host].connected = False  # the host itself went away

        with pytest.raises(ZmnError) as failed:
            await cloud.vm("nowhere")
        assert failed.value.code == "HOST.NOT_CONNECTED"
        assert (await cloud.host("h1"))["status"] == "Disconnected"
