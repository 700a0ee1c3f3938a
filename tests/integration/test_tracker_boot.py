"""A node's boot gives each resumed simulator host the VMs the database places on it."""

from __future__ import annotations

from pathlib import Path

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import build_cloud
from zmn.services.host.simulator import SimulatorHypervisor


async def test_boot_hands_each_host_its_placed_vms_and_only_those(
    tmp_path: Path, db_engine: str
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        vms = {name: await cloud.vm(name) for name in ("a", "b", "c", "d", "e")}
        await api("StopVmInstance", uuid=vms["b"]["uuid"])  # not placed: no hostUuid
        await api("PauseVmInstance", uuid=vms["c"]["uuid"])
        placed: dict[str, dict[str, str]] = {}
        for inv in (await api("QueryVmInstance"))["inventories"]:
            if inv["hostUuid"]:
                placed.setdefault(inv["hostUuid"], {})[inv["uuid"]] = inv["state"]
        assert sum(len(v) for v in placed.values()) == 4

        sim: SimulatorHypervisor = node.services["host"].types.get("Simulator").hypervisor  # type: ignore[attr-defined]
        sim.hosts.clear()  # a restart: the simulator's records are gone
        tracker = node.services["host"].tracker  # type: ignore[attr-defined]
        await tracker.boot()
        assert tracker.boot_summary["resumed"] == 2
        for host_uuid in (cloud["h1"], cloud["h2"]):
            assert sim.vm_states(host_uuid) == placed.get(host_uuid, {})
        # the adopted VMs work as before the restart
        await api("StopVmInstance", uuid=vms["a"]["uuid"])
        await api("ResumeVmInstance", uuid=vms["c"]["uuid"])
        got = await cloud.get_vm(vms["c"]["uuid"])
        assert got["state"] == "Running"
        assert sim.vm(got["hostUuid"], got["uuid"]).state == "Running"
