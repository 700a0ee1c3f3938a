"""CancelJob (the running flow stops before its next step and rolls back what it did) and
the resource UUID a create's job names from its start."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from tests.conftest import need
from tests.support.inproc import Api, running_node
from zmn.api.errors import Conflict, ZmnError
from zmn.api.message import ApiMessage, CreateMessage, api
from zmn.core.flow import Flow, FlowContext
from zmn.core.models import FlowRecordVO, JobVO
from zmn.core.node import Node
from zmn.core.resource import ResourceRegistry
from zmn.core.service import Call, Service, handler
from zmn.server import ApiServer
from zmn.services.config.service import ConfigService
from zmn.services.identity.service import IdentityService
from zmn.services.job.service import CANCEL_PATH, JobService
from zmn.services.query.service import QueryService

LOG: list[str] = []


@api(long=True)
class BuildThing(ApiMessage, kw_only=True):
    """Runs the three-step chain build-thing; step ``wait`` holds until released."""


@api(long=True)
class CreateThing(CreateMessage, kw_only=True):
    """Creates nothing; answers the resourceUuid it was given and its job's row."""


class Step(Flow):
    async def run(self, ctx: FlowContext) -> None:
        LOG.append(f"run {self.name}")

    async def rollback(self, ctx: FlowContext) -> None:
        LOG.append(f"rollback {self.name}")


class First(Step):
    name = "first"


class Wait(Step):
    name = "wait"
    started: ClassVar[asyncio.Event]
    release: ClassVar[asyncio.Event]

    async def run(self, ctx: FlowContext) -> None:
        await super().run(ctx)
        type(self).started.set()
        await type(self).release.wait()


class Last(Step):
    name = "last"


class ThingService(Service):
    name = "thing"

    def declare(self, registry: ResourceRegistry) -> None:
        self.node.flows.add_chain("build-thing", [First, Wait, Last])

    @handler(BuildThing)
    async def build(self, msg: BuildThing, call: Call) -> dict[str, Any]:
        await self.node.flows.chain("build-thing").run(FlowContext(call))
        return {"built": True}

    @handler(CreateThing)
    async def create(self, msg: CreateThing, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            row = s.get(JobVO, call.job_uuid)
            assert row is not None
            recorded = row.resourceUuid
        return {"inventory": {"uuid": msg.resourceUuid}, "jobResourceUuid": recorded}


SERVICES = [IdentityService, ConfigService, QueryService, JobService, ThingService]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer, Api]]:
    LOG.clear()
    Wait.started, Wait.release = asyncio.Event(), asyncio.Event()
    async with running_node(tmp_path / "home", services=SERVICES) as (node, server):
        yield node, server, Api(node)
        Wait.release.set()


async def start(node: Node) -> str:
    _, job = await node.execute("BuildThing", {}, peer_admin=True, wait=False)
    assert job
    await asyncio.wait_for(Wait.started.wait(), 5)
    return job


async def test_cancel_stops_at_the_next_step_and_rolls_back(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, _server, api = env
    job = await start(node)
    reply = await api("CancelJob", uuid=job)
    assert reply["cancelRequested"] is True and reply["inventory"]["state"] == "Running"
    Wait.release.set()
    inv = (await api("WaitJob", uuid=job, timeout=5))["inventory"]
    assert inv["state"] == "Canceled"
    assert inv["error"]["code"] == "JOB.CANCELED"
    assert inv["error"]["details"]["flow"] == "last"
    assert LOG == ["run first", "run wait", "rollback wait", "rollback first"]
    with node.db.tx() as s:
        record = s.scalars(select(FlowRecordVO).where(FlowRecordVO.jobUuid == job)).one()
        assert record.state == "Canceled" and record.doneFlows == "[]"
    canceled = await api("QueryJob", conditions=["state=Canceled"])
    assert [j["uuid"] for j in canceled["inventories"]] == [job]


async def test_cancel_of_a_finished_job_is_a_conflict(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    job = await start(node)
    Wait.release.set()
    assert (await api("WaitJob", uuid=job, timeout=5))["inventory"]["state"] == "Succeeded"
    with pytest.raises(Conflict) as err:
        await api("CancelJob", uuid=job)
    assert err.value.code == "JOB.NOT_RUNNING" and err.value.field == "uuid"
    assert LOG == ["run first", "run wait", "run last"]


async def test_cancel_reaches_the_node_running_the_job(env: tuple[Node, ApiServer, Api]) -> None:
    """Another node publishes the request; the node running the job acts on it."""
    node, _server, api = env
    job = await start(node)
    await node.bus.publish(CANCEL_PATH, {"jobUuid": job})
    Wait.release.set()
    inv = (await api("WaitJob", uuid=job, timeout=5))["inventory"]
    assert inv["state"] == "Canceled"


async def test_cancel_of_an_unknown_job(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    with pytest.raises(ZmnError) as err:
        await api("CancelJob", uuid="0" * 32)
    assert err.value.code.endswith("NOT_FOUND")


async def test_a_create_job_names_its_resource_from_the_start(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, _server, api = env
    result, job = await node.execute("CreateThing", {}, peer_admin=True)
    uuid = result["inventory"]["uuid"]
    assert isinstance(uuid, str) and len(uuid) == 32
    assert result["jobResourceUuid"] == uuid  # on the row while the job ran
    assert (await api("GetJob", uuid=job))["inventory"]["resourceUuid"] == uuid
    chosen = "ab" * 16
    result, _ = await node.execute("CreateThing", {"resourceUuid": chosen}, peer_admin=True)
    assert result["inventory"]["uuid"] == result["jobResourceUuid"] == chosen


async def test_the_dashboard_offers_cancel_on_running_jobs_only(
    env: tuple[Node, ApiServer, Api],
) -> None:
    from tui.catalogue import Catalogue as TuiCatalogue
    from zmn.core.catalogue import build_catalogue

    node, _server, _api = env
    cat = TuiCatalogue(build_catalogue(node))
    cancel = next(a for a in cat.actions("Job") if a.api == "CancelJob")
    assert cat.permits("Job", cancel, {"state": "Running"})
    assert not cat.permits("Job", cancel, {"state": "Succeeded"})
    assert not cat.permits("Job", cancel, {"state": "Canceled"})


# --------------------------------------------------------------------------- two nodes


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes in this process on one MariaDB database and one RabbitMQ namespace (the
    scale-out set-up), each with its own home and API socket."""
    from tests.integration.test_amqp_bus import URL, broker_up, cleanup
    from tests.support.dbstate import fresh_database

    need(broker_up(), "RabbitMQ is not running on 127.0.0.1:5672")
    LOG.clear()
    Wait.started, Wait.release = asyncio.Event(), asyncio.Event()
    namespace = "zt" + uuid.uuid4().hex[:10]
    for url in fresh_database("mysql", tmp_path, "cancel"):
        conf = {"db.url": url, "bus.url": URL, "bus.namespace": namespace}
        try:
            async with (
                running_node(tmp_path / "a", services=SERVICES, conf=conf) as (a, _sa),
                running_node(tmp_path / "b", services=SERVICES, conf=conf) as (b, _sb),
            ):
                yield a, b
                Wait.release.set()
        finally:
            await asyncio.to_thread(cleanup, namespace, [])


async def test_cancel_on_one_node_stops_the_flow_running_on_another(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    heard: list[str] = []  # cancel requests node a's job manager received
    answered: list[bool] = []  # what node b's job manager answered (False: not running here)
    on_a, on_b = a.jobs.request_cancel, b.jobs.request_cancel

    def spy_a(uuid: str) -> bool:
        heard.append(uuid)
        return on_a(uuid)

    def spy_b(uuid: str) -> bool:
        answered.append(on_b(uuid))
        return answered[-1]

    a.jobs.request_cancel = spy_a  # type: ignore[method-assign]
    b.jobs.request_cancel = spy_b  # type: ignore[method-assign]
    job = await start(a)  # runs on a, held in its second step
    assert job in a.jobs.tasks and job not in b.jobs.tasks
    reply = await Api(b)("CancelJob", uuid=job)
    assert reply["cancelRequested"] is True and reply["inventory"]["state"] == "Running"
    deadline = asyncio.get_running_loop().time() + 60
    while job not in heard and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)  # the request crosses RabbitMQ
    assert job in heard
    # job APIs are handled where they arrive (zmn.core.node._routing_uuid): b took the
    # CancelJob, found no such task of its own and published the request, which a acted on
    assert answered and not any(answered)
    Wait.release.set()
    inv = (await Api(b)("WaitJob", uuid=job, timeout=60))["inventory"]
    assert inv["state"] == "Canceled" and inv["error"]["code"] == "JOB.CANCELED"
    assert LOG == ["run first", "run wait", "rollback wait", "rollback first"]
