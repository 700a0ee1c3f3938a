"""Regression: crashes between a side effect and the flow record that describes it.

Each test runs a real ``CreateVmInstance`` and "kills" it at one point: a write of the flow
record (or the handler's last state change) never returns, and the job is cancelled as a node
shutdown would (no rollback in the process); then recovery runs as at restart.

* Killed in ``vm-allocate-primary-storage`` after the capacity ``UPDATE`` committed, before
  the record with ``allocatedPsUuid`` was durable: the bytes leaked (CheckConsistency in the
  e2e: "available is X but total minus its volumes is X+10GiB"). The reservation is now
  recorded under the step's key with the ``UPDATE``, and the undo releases by that key.
* Killed mid-rollback after the storage's release, before the undo's progress was saved:
  recovery released the bytes again. The release by key is a no-op the second time.
* Killed after the chain was ``Done`` but before the handler set the VM Running: recovery
  left the VM Unknown; it now finishes it (Running, and the job succeeds).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import build_cloud, consistent
from zmn.core.flow import FaultPlan
from zmn.core.models import FlowRecordVO, JobVO, ReservationVO
from zmn.core.node import Node
from zmn.services.vm import lifecycle
from zmn.services.vm.recovery import recover


async def capacity(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    hosts = (await api("QueryHost"))["inventories"]
    storage = (await api("QueryPrimaryStorage"))["inventories"]
    return (
        {h["uuid"]: (h["availableCpuCapacity"], h["availableMemoryCapacity"]) for h in hosts},
        {p["uuid"]: p["availableCapacity"] for p in storage},
    )


def hang_record_write(node: Node, when: Callable[[dict[str, Any]], bool]) -> asyncio.Event:
    """The first flow-record save matching ``when`` is never written and never returns (the
    node died); what the turn wrote before it commits without it."""
    writer = node.flows.writer
    real = writer.save
    hung = asyncio.Event()

    def save(record: str, row: dict[str, Any], *args: Any) -> asyncio.Future[None] | None:
        if not hung.is_set() and when(row):
            hung.set()
            return asyncio.get_running_loop().create_future()  # never done: cancelled with the job
        return real(record, row, *args)

    writer.save = save  # type: ignore[method-assign]
    return hung


async def kill_create(node: Node, cloud: Any, hung: asyncio.Event, name: str) -> None:
    """Start a create, wait until it hangs, cancel its job as a node shutdown would."""
    create = asyncio.create_task(cloud.vm(name))
    await asyncio.wait_for(hung.wait(), 10)
    for task in list(node.jobs.tasks.values()):
        task.cancel()
    with pytest.raises(BaseException):  # noqa: B017 - interrupted, however it surfaces
        await create
    await asyncio.sleep(0)


def done_flows(params: dict[str, Any]) -> list[str]:
    return list(json.loads(params.get("doneFlows") or "[]"))


async def test_killed_after_storage_reserved_before_record_leaks_nothing(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        before = await capacity(api)
        # the write after vm-allocate-primary-storage (its data: which storage) is lost
        hung = hang_record_write(node, lambda p: "vm-allocate-primary-storage" in done_flows(p))
        await kill_create(node, cloud, hung, "leaky")
        with node.db.tx() as s:
            rec = s.scalars(select(FlowRecordVO).where(FlowRecordVO.chain == "vm-create")).one()
            assert rec.state == "Running"
            assert rec.currentFlow == "vm-allocate-primary-storage"
            assert "allocatedPsUuid" not in json.loads(rec.data)
        assert (await capacity(api))[1] != before[1]  # the bytes were taken

        await recover(node)

        assert await cloud.count("VmInstance", "name=leaky") == 0
        assert await capacity(api) == before  # host and storage: nothing leaked
        with node.db.tx() as s:
            assert s.scalars(select(ReservationVO)).all() == []
        await consistent(api)


async def test_killed_mid_rollback_after_a_release_does_not_release_twice(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        before = await capacity(api)
        # the create fails at its NICs and rolls back; the node dies right after the storage
        # step's undo (the release committed), before that undo's progress is durable
        node.flows.faults.append(FaultPlan("vm-create", "vm-allocate-nics"))
        # (matched by the last step still done, not the whole list: the chain gains steps,
        # e.g. vm-create-cloud-init between the record and the backup storage)
        hung = hang_record_write(
            node,
            lambda p: (
                p.get("state") == "RollingBack" and done_flows(p)[-1:] == ["vm-allocate-host"]
            ),
        )
        await kill_create(node, cloud, hung, "twice")
        assert (await capacity(api))[1] == before[1]  # released once already

        await recover(node)  # undoes the storage step again: must give back nothing

        assert await cloud.count("VmInstance", "name=twice") == 0
        assert await capacity(api) == before
        await consistent(api)


async def test_killed_after_done_before_running_is_finished_at_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        hung = asyncio.Event()
        real = vars(lifecycle)["set_state"]  # what the create handler calls

        async def set_state(call: Any, uuid: str, event: str, **fields: Any) -> Any:
            if event == "running" and not hung.is_set():
                hung.set()  # the chain is Done; the node dies before the VM is Running
                await asyncio.Event().wait()
            return await real(call, uuid, event, **fields)

        monkeypatch.setattr(lifecycle, "set_state", set_state)
        await kill_create(node, cloud, hung, "almost")
        with node.db.tx() as s:
            rec = s.scalars(select(FlowRecordVO).where(FlowRecordVO.chain == "vm-create")).one()
            assert rec.state == "Done"
            job = s.get(JobVO, rec.jobUuid)
            assert job is not None and job.state == "Interrupted"
        vm = (await api("QueryVmInstance", conditions=["name=almost"]))["inventories"][0]
        assert vm["state"] == "Starting"

        await recover(node)

        vm = await cloud.get_vm(vm["uuid"])
        assert vm["state"] == "Running" and vm["lastHostUuid"] == vm["hostUuid"]
        with node.db.tx() as s:
            job = s.get(JobVO, rec.jobUuid)
            assert job is not None and job.state == "Succeeded"
            assert json.loads(job.result or "{}")["inventory"]["uuid"] == vm["uuid"]
        # a client retrying the create with its resourceUuid sees the VM Running
        again = await cloud.vm("almost", resourceUuid=vm["uuid"])
        assert again["state"] == "Running"
        await consistent(api)
