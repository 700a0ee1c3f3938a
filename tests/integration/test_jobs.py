"""Jobs: long APIs run as jobs; WaitJob, GetJob, QueryJob and who may see which job."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from sqlalchemy import update

from tests.support.inproc import Api, client_for, running_node
from zmn.api.errors import OperationFailed, Timeout, ZmnError
from zmn.api.message import ApiMessage, Doc, Secret, api
from zmn.core.db import new_uuid, utcnow
from zmn.core.models import JobVO
from zmn.core.node import Node
from zmn.core.service import Call, Service, handler
from zmn.server import ApiServer
from zmn.services.config.service import ConfigService
from zmn.services.identity.service import IdentityService
from zmn.services.job.service import JobService
from zmn.services.query.service import QueryService

pytestmark = pytest.mark.usefixtures("cheap_hashes")


@api(long=True)
class RunSlowThing(ApiMessage, kw_only=True):
    """Runs until the test releases it (or fails on request)."""

    fail: Annotated[bool, Doc("fail instead of succeeding")] = False
    token: Annotated[str, Doc("a secret the job must not reveal"), Secret()] = ""


class SlowService(Service):
    name = "testSlow"
    release: asyncio.Event

    @handler(RunSlowThing)
    async def slow(self, msg: RunSlowThing, call: Call) -> dict[str, Any]:
        await call.progress(50, "half way")
        await type(self).release.wait()
        if msg.fail:
            raise OperationFailed("asked to fail", code="TEST.FAILED")
        return {"answer": 42}


SERVICES = [IdentityService, ConfigService, QueryService, JobService, SlowService]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer, Api]]:
    SlowService.release = asyncio.Event()
    async with running_node(tmp_path / "home", services=SERVICES) as (node, server):
        yield node, server, Api(node)
        SlowService.release.set()


async def start_job(node: Node, **args: Any) -> str:
    _, job = await node.execute("RunSlowThing", args, peer_admin=True, wait=False)
    assert job
    return job


async def test_wait_job_times_out_then_returns_the_result(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    job = await start_job(node)
    with pytest.raises(Timeout) as err:
        await api("WaitJob", uuid=job, timeout=0.1)
    assert err.value.code == "JOB.WAIT_TIMEOUT" and err.value.details["jobUuid"] == job
    running = (await api("GetJob", uuid=job))["inventory"]
    assert running["state"] == "Running" and running["progress"] == 50
    assert running["progressText"] == "half way" and running["name"] == "RunSlowThing"
    # progress lives in memory while the job runs (only state changes write the row):
    # queries show it too
    queried = (await api("QueryJob", conditions=[f"uuid={job}"]))["inventories"]
    assert [(r["state"], r["progress"], r["progressText"]) for r in queried] == [
        ("Running", 50, "half way")
    ]
    SlowService.release.set()
    done = (await api("WaitJob", uuid=job, timeout=5))["inventory"]
    assert done["state"] == "Succeeded" and done["progress"] == 100
    assert done["result"] == {"answer": 42} and done["error"] is None
    assert (await api("WaitJob", uuid=job))["inventory"] == done  # finished: answers at once
    rows = (await api("QueryJob", conditions=["state=Succeeded"]))["inventories"]
    assert [r["uuid"] for r in rows] == [job]
    assert rows[0]["result"] == {"answer": 42}


async def test_a_failed_job_carries_its_error(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    job = await start_job(node, fail=True)
    SlowService.release.set()
    done = (await api("WaitJob", uuid=job))["inventory"]
    assert done["state"] == "Failed" and done["result"] is None
    assert done["error"]["code"] == "TEST.FAILED" and done["error"]["kind"] == "OperationFailed"
    assert (await api("QueryJob", conditions=["state=Failed"], count=True))["total"] == 1


async def test_wait_over_the_socket_for_a_detached_job(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, _api = env
    async with client_for(server) as c:
        reply = await c.request("RunSlowThing", {}, wait=False)
        job = reply["job"]
        assert reply["result"]["job"]["state"] == "Running"
        waiter = asyncio.ensure_future(c.call("WaitJob", {"uuid": job, "timeout": 5}))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        SlowService.release.set()
        assert (await waiter)["inventory"]["result"] == {"answer": 42}


async def test_job_arguments_are_not_exposed(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    job = await start_job(node, token="hunter2")
    inv = (await api("GetJob", uuid=job))["inventory"]
    assert "hunter2" not in repr(inv)
    assert "hunter2" not in repr(await api("QueryJob"))
    with pytest.raises(ZmnError) as err:
        await api("QueryJob", conditions=["args~=hunter2"])
    assert err.value.code == "QUERY.UNKNOWN_FIELD"


async def test_accounts_see_only_their_own_jobs(env: tuple[Node, ApiServer, Api]) -> None:
    node, server, api = env
    admin_job = await start_job(node)
    await api("CreateAccount", name="alice", password="alice-password")
    login = await api("LogInByAccount", accountName="alice", password="alice-password")
    async with client_for(server, session=login["inventory"]["uuid"]) as c:
        mine = (await c.request("RunSlowThing", {}, wait=False))["job"]
        rows = (await c.call("QueryJob"))["inventories"]
        assert [r["uuid"] for r in rows] == [mine]
        assert rows[0]["accountUuid"] == login["inventory"]["accountUuid"]
        for api_name in ("GetJob", "WaitJob"):
            with pytest.raises(ZmnError) as err:
                await c.call(api_name, {"uuid": admin_job})
            assert err.value.code == "JOB.NOT_FOUND"
        SlowService.release.set()
        assert (await c.call("WaitJob", {"uuid": mine}))["inventory"]["state"] == "Succeeded"
    assert sorted(r["uuid"] for r in (await api("QueryJob"))["inventories"]) == sorted(
        [admin_job, mine]
    )


async def test_wait_for_a_job_running_on_another_node(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    uuid = new_uuid()
    with node.db.tx() as s:
        s.add(
            JobVO(
                uuid=uuid,
                name="CreateVmInstance",
                state="Running",
                accountUuid=node.admin_principal().accountUuid,
                managementNodeUuid=new_uuid(),
            )
        )
    started = utcnow()
    with pytest.raises(Timeout):
        await api("WaitJob", uuid=uuid, timeout=0.3)
    assert utcnow() - started >= dt.timedelta(seconds=0.3)

    async def finish_elsewhere() -> None:
        await asyncio.sleep(0.2)
        node.db_write(
            update(JobVO).where(JobVO.uuid == uuid).values(state="Succeeded", result='{"ok": 1}')
        )

    finisher = asyncio.ensure_future(finish_elsewhere())
    done = (await api("WaitJob", uuid=uuid, timeout=5))["inventory"]
    await finisher
    assert done["state"] == "Succeeded" and done["result"] == {"ok": 1}


async def test_unknown_job(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    for api_name in ("GetJob", "WaitJob"):
        with pytest.raises(ZmnError) as err:
            await api(api_name, uuid=new_uuid())
        assert err.value.code == "JOB.NOT_FOUND"
