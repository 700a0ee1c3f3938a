"""Jobs: background work with a persisted row, waited on, failing, timing out, interrupted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.querymodel import build_node
from zmn.api.errors import Conflict, InternalError, NotFound, Timeout
from zmn.core.bus import Event
from zmn.core.jobs import JobHandle
from zmn.core.models import JobVO
from zmn.core.node import Node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = build_node(tmp_path / "home", [])
    await n.bus.start()
    yield n
    await n.jobs.drain(1)
    n.db.dispose()


def row(node: Node, uuid: str) -> JobVO:
    with node.db.tx() as s:
        job = s.get(JobVO, uuid)
        assert job is not None
        return job


async def test_submit_and_wait_records_the_result(node: Node) -> None:
    events: list[Event] = []
    node.bus.subscribe("/job/**", events.append)

    async def work(handle: JobHandle) -> Any:
        await handle.progress(40, "half way")
        return {"inventory": {"uuid": "x"}}

    principal = node.admin_principal()
    uuid, task = node.jobs.submit(
        "MakeThing", {"name": "t"}, principal, work, resource_uuid="r" * 32
    )
    assert node.jobs.in_flight == 1
    inv = await node.jobs.wait(uuid, timeout=5)
    assert inv["state"] == "Succeeded"
    assert inv["progress"] == 100
    assert inv["progressText"] == "half way"
    assert inv["result"] == {"inventory": {"uuid": "x"}}
    assert inv["error"] is None
    assert inv["resourceUuid"] == "r" * 32
    assert inv["accountUuid"] == principal.accountUuid
    assert inv["managementNodeUuid"] == node.uuid
    assert json.loads(row(node, uuid).args) == {"name": "t"}
    assert await task == {"inventory": {"uuid": "x"}}
    assert node.jobs.in_flight == 0
    assert node.jobs.finished == 1
    paths = [e.path for e in events]
    assert paths == [f"/job/{uuid}", f"/job/{uuid}", "/job/state/change", f"/job/{uuid}"]
    # the start names the job for its followers before any progress
    assert events[0].data == {"jobUuid": uuid, "name": "MakeThing", "state": "Running"}
    assert events[1].data["progress"] == 40
    assert events[2].data == {"jobUuid": uuid, "name": "MakeThing", "state": "Succeeded"}


async def test_failure_is_recorded_with_the_error(node: Node) -> None:
    async def work(handle: JobHandle) -> Any:
        raise Conflict("host is busy", code="HOST.BUSY", field="hostUuid")

    uuid, task = node.jobs.submit("Job", {}, node.admin_principal(), work)
    inv = await node.jobs.wait(uuid, timeout=5)
    assert inv["state"] == "Failed"
    assert inv["error"] == {
        "kind": "Conflict",
        "code": "HOST.BUSY",
        "message": "host is busy",
        "details": {"field": "hostUuid"},
        "retryable": False,
    }
    assert json.loads(row(node, uuid).error or "")["code"] == "HOST.BUSY"
    with pytest.raises(Conflict):
        await task


async def test_unexpected_exception_becomes_internal_error(node: Node) -> None:
    async def work(handle: JobHandle) -> Any:
        raise KeyError("k")

    uuid, task = node.jobs.submit("Job", {}, node.admin_principal(), work)
    with pytest.raises(InternalError):
        await task
    inv = node.jobs.get(uuid)
    assert inv["state"] == "Failed"
    assert inv["error"]["kind"] == "InternalError"
    assert "KeyError" in inv["error"]["message"]


async def test_job_timeout(node: Node) -> None:
    async def work(handle: JobHandle) -> Any:
        await asyncio.sleep(10)

    uuid, task = node.jobs.submit("Slow", {}, node.admin_principal(), work, timeout=0.05)
    with pytest.raises(Timeout) as info:
        await task
    assert info.value.code == "JOB.TIMEOUT"
    inv = node.jobs.get(uuid)
    assert inv["state"] == "Failed"
    assert inv["error"]["code"] == "JOB.TIMEOUT"
    assert row(node, uuid).timeout == 0  # stored as whole seconds


async def test_wait_timeout_leaves_the_job_running(node: Node) -> None:
    gate = asyncio.Event()

    async def work(handle: JobHandle) -> Any:
        await gate.wait()
        return 7

    uuid, task = node.jobs.submit("Gated", {}, node.admin_principal(), work)
    with pytest.raises(Timeout) as info:
        await node.jobs.wait(uuid, timeout=0.05)
    assert info.value.code == "JOB.WAIT_TIMEOUT"
    assert info.value.details["jobUuid"] == uuid
    assert not task.done()  # waiting gave up; the job did not
    assert node.jobs.get(uuid)["state"] == "Running"
    gate.set()
    assert (await node.jobs.wait(uuid, timeout=5))["result"] == 7


async def test_unknown_job(node: Node) -> None:
    with pytest.raises(NotFound) as info:
        await node.jobs.wait("0" * 32, timeout=1)
    assert info.value.code == "JOB.NOT_FOUND"


async def test_client_chosen_job_uuid(node: Node) -> None:
    async def work(handle: JobHandle) -> Any:
        return handle.uuid

    uuid, task = node.jobs.submit("J", {}, node.admin_principal(), work, job_uuid="a" * 32)
    assert uuid == "a" * 32
    assert await task == "a" * 32


async def test_drain_cancels_what_does_not_finish(node: Node) -> None:
    async def quick(handle: JobHandle) -> Any:
        return 1

    async def stuck(handle: JobHandle) -> Any:
        await asyncio.sleep(10)

    q, _ = node.jobs.submit("Quick", {}, node.admin_principal(), quick)
    s, _ = node.jobs.submit("Stuck", {}, node.admin_principal(), stuck)
    assert await node.jobs.drain(0.1) == 1
    assert node.jobs.get(q)["state"] == "Succeeded"
    inv = node.jobs.get(s)
    assert inv["state"] == "Interrupted"
    assert inv["error"]["code"] == "JOB.INTERRUPTED"


async def test_mark_interrupted_touches_only_this_nodes_running_jobs(node: Node) -> None:
    with node.db.tx() as s:
        for uuid, state, owner in [
            ("1" * 32, "Running", node.uuid),
            ("2" * 32, "Running", "f" * 32),  # another node's job
            ("3" * 32, "Succeeded", node.uuid),
        ]:
            s.add(
                JobVO(
                    uuid=uuid, name="J", state=state, accountUuid="0" * 32, managementNodeUuid=owner
                )
            )
    assert node.jobs.mark_interrupted() == 1
    assert row(node, "1" * 32).state == "Interrupted"
    assert json.loads(row(node, "1" * 32).error or "")["code"] == "JOB.INTERRUPTED"
    assert row(node, "2" * 32).state == "Running"
    assert row(node, "3" * 32).state == "Succeeded"
    assert node.jobs.mark_interrupted() == 0
