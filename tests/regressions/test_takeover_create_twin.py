"""Regression: the takeover of a dead node's creates undid what a twin of the create made.

A node killed in the first step of a ``vm-create`` run (``vm-create-record``: the VM row not
yet written) leaves a record that recovery undoes. Meanwhile the client's retry of the same
create (same ``resourceUuid``; or the broker redelivering the unacknowledged request) found
no VM row and made the VM on a live node. Undoing the dead run's first step deleted that VM's
row: an acknowledged VM vanished, its NIC, volume and host reservation stayed behind, and the
next reconciler pass "repaired" the host's capacity to match (the e2e on PostgreSQL: a host
with one VM's CPU and memory too many free). Recovery now deletes the dead run's row only
while it is still ``Created`` and no other run of that UUID is recorded.

A run killed in ``vm-allocate-host`` after the reservation committed (the record holds the
data of before the step) leaked the reservation: the reservation is now recorded under the
step's key in the transaction that takes it, and recovery releases it by that key.

And a reconciler pass that saw a create between its reservation and its placement (or, on
PostgreSQL, placements between the check's two queries) "repaired" a gap that closed a moment
later, leaving a real one: drift is repaired only when seen again, identical, a moment later.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import GiB, build_cloud, consistent
from zmn.core import reservations
from zmn.core.models import FlowRecordVO
from zmn.services.host.models import HostVO
from zmn.services.vm import recovery
from zmn.services.vm.models import VmInstanceVO
from zmn.services.vm.recovery import recover

DEAD = "dead" + "0" * 28  # the evicted node's UUID on what it left in the database


def dead_record(vm_uuid: str, flow: str, done: list[str], data: dict[str, Any]) -> FlowRecordVO:
    """What a node killed in step ``flow`` of a create leaves in ``flow_record``."""
    return FlowRecordVO(
        uuid=uuid.uuid4().hex,
        chain="vm-create",
        state="Running",
        currentFlow=flow,
        doneFlows=json.dumps(done),
        data=json.dumps({"vmUuid": vm_uuid, "strategy": "InstantStart", **data}),
        managementNodeUuid=DEAD,
    )


async def free(api: Api) -> dict[str, tuple[int, int]]:
    hosts = (await api("QueryHost"))["inventories"]
    return {h["uuid"]: (h["availableCpuCapacity"], h["availableMemoryCapacity"]) for h in hosts}


async def test_takeover_keeps_the_vm_a_retry_made(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        vm_uuid = uuid.uuid4().hex
        with node.db.tx() as s:  # the dead node got as far as the intent of its first step
            s.add(dead_record(vm_uuid, "vm-create-record", [], {"name": "twin"}))
        twin = await cloud.vm("twin", resourceUuid=vm_uuid)  # the retry, on a live node
        assert twin["state"] == "Running"
        taken = await free(api)

        await recover(node, of_node=DEAD)  # the survivor's takeover

        inv = await cloud.get_vm(vm_uuid)
        assert (inv["state"], inv["hostUuid"]) == ("Running", twin["hostUuid"])
        assert len(inv["vmNics"]) == 1 and len(inv["allVolumes"]) == 1
        assert await free(api) == taken
        await consistent(api)


async def test_takeover_removes_the_row_the_dead_run_wrote(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        before = await free(api)
        vm_uuid = uuid.uuid4().hex
        with node.db.tx() as s:  # killed after the row committed, before the record said so
            s.add(dead_record(vm_uuid, "vm-create-record", [], {"name": "own"}))
            s.add(
                VmInstanceVO(
                    uuid=vm_uuid,
                    name="own",
                    zoneUuid=cloud["zone"],
                    imageUuid=cloud["image"],
                    type="UserVm",
                    platform="Linux",
                    cpuNum=1,
                    memorySize=GiB,
                    state="Created",
                )
            )
        await recover(node, of_node=DEAD)
        assert await cloud.count("VmInstance", f"uuid={vm_uuid}") == 0
        assert await free(api) == before
        await consistent(api)


async def test_takeover_gives_back_a_reservation_the_record_missed(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        before = await free(api)
        vm_uuid = uuid.uuid4().hex
        host = cloud["h1"]
        rec = dead_record(
            vm_uuid,
            "vm-allocate-host",
            ["vm-create-record", "vm-select-backup-storage"],
            {"name": "half", "cpuNum": 1, "memorySize": GiB},
        )
        with node.db.tx() as s:  # killed in vm-allocate-host after the reservation and the
            s.add(rec)  # VM's placement committed, before the record got the step's data
            s.add(
                VmInstanceVO(
                    uuid=vm_uuid,
                    name="half",
                    zoneUuid=cloud["zone"],
                    imageUuid=cloud["image"],
                    type="UserVm",
                    platform="Linux",
                    cpuNum=1,
                    memorySize=GiB,
                    state="Created",
                    hostUuid=host,
                )
            )
            s.execute(
                update(HostVO)
                .where(HostVO.uuid == host)
                .values(
                    availableCpuCapacity=HostVO.availableCpuCapacity - 1,
                    availableMemoryCapacity=HostVO.availableMemoryCapacity - GiB,
                )
            )
            # AllocateHost records the reservation under the step's key with the UPDATE
            reservations.add(
                s, f"{rec.uuid}:vm-allocate-host", "Host", host, cpuNum=1, memorySize=GiB
            )
        assert (await free(api))[host] != before[host]  # reserved
        await recover(node, of_node=DEAD)
        assert await cloud.count("VmInstance", f"uuid={vm_uuid}") == 0
        assert await free(api) == before  # not leaked
        await consistent(api)


async def test_reconciler_leaves_a_gap_that_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "CAPACITY_CONFIRM_DELAY", 1.5, raising=False)
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        vm = await cloud.vm("placed")
        host = vm["hostUuid"]
        placed = await free(api)
        # a create in flight: its host reserved, the VM not placed on it yet
        unplace = update(VmInstanceVO).where(VmInstanceVO.uuid == vm["uuid"])
        with node.db.tx() as s:
            s.execute(unplace.values(hostUuid=None))
        reconciler = node.services["vm"].reconciler  # type: ignore[attr-defined]
        run = asyncio.create_task(reconciler.run_once())
        await asyncio.sleep(0.75)  # the pass has seen the gap and looks again later
        with node.db.tx() as s:  # the create places its VM: the gap is gone
            s.execute(unplace.values(hostUuid=host))
        drift = await run
        capacity = [d for d in drift if d["check"] == "host-capacity"]
        assert capacity and not any(d["fixed"] for d in capacity), drift
        assert await free(api) == placed
        await consistent(api)
