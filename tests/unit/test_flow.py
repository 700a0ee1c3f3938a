"""Flow chains: ordered steps, rollback in reverse, persisted records, configurable chains."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.querymodel import build_node
from zmn.api.errors import Conflict, InvalidArgument, OperationFailed
from zmn.core.flow import Flow, FlowContext
from zmn.core.models import FlowRecordVO, JobVO
from zmn.core.node import Node
from zmn.core.resource import ResourceRegistry
from zmn.core.service import Call, Service

LOG: list[str] = []


class Step(Flow):
    """Records run/rollback in LOG; fails when ``ctx.data['fail']`` names it."""

    async def run(self, ctx: FlowContext) -> None:
        LOG.append(f"run {self.name}")
        ctx.data.setdefault("ran", []).append(self.name)
        failure = ctx.data.get("fail", {}).get(self.name)
        if failure == "zmn":
            raise Conflict("the thing is busy", code="THING.BUSY", field="uuid")
        if failure == "plain":
            raise RuntimeError("disk on fire")

    async def rollback(self, ctx: FlowContext) -> None:
        LOG.append(f"rollback {self.name}")
        if ctx.data.get("rollback_fails") == self.name:
            raise RuntimeError("cannot undo")


class A(Step):
    name = "a"


class B(Step):
    name = "b"


class C(Step):
    name = "c"


class D(Step):
    name = "d"


class Extra(Step):
    name = "extra"


class FlowService(Service):
    name = "flowtest"
    chains: ClassVar[dict[str, list[type[Flow]]]] = {"make-thing": [A, B, C], "other": [D]}

    def declare(self, registry: ResourceRegistry) -> None:
        for chain, flows in self.chains.items():
            self.node.flows.add_chain(chain, flows)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    LOG.clear()
    n = build_node(tmp_path / "home", [FlowService])
    yield n
    n.db.dispose()


def ctx_for(node: Node, **data: Any) -> FlowContext:
    return FlowContext(Call(node, node.admin_principal(), "MakeThing"), data=dict(data))


def record(node: Node, uuid: str) -> FlowRecordVO:
    with node.db.tx() as s:
        row = s.get(FlowRecordVO, uuid)
        assert row is not None
        return row


async def test_runs_in_order_and_records_done(node: Node) -> None:
    events: list[tuple[str, str, str]] = []
    node.flows.listeners.append(lambda chain, flow, event: events.append((chain, flow, event)))
    ctx = ctx_for(node)
    data = await node.flows.chain("make-thing").run(ctx)
    assert data["ran"] == ["a", "b", "c"]
    assert LOG == ["run a", "run b", "run c"]
    assert events == [
        ("make-thing", "a", "run"),
        ("make-thing", "a", "done"),
        ("make-thing", "b", "run"),
        ("make-thing", "b", "done"),
        ("make-thing", "c", "run"),
        ("make-thing", "c", "done"),
    ]
    row = record(node, ctx.record_uuid)
    assert row.state == "Done"
    assert row.chain == "make-thing"
    assert row.currentFlow is None
    assert json.loads(row.doneFlows) == ["a", "b", "c"]
    assert json.loads(row.data)["ran"] == ["a", "b", "c"]
    assert row.managementNodeUuid == node.uuid
    assert row.error is None


async def test_failure_rolls_back_finished_flows_in_reverse(node: Node) -> None:
    events: list[tuple[str, str]] = []
    node.flows.listeners.append(lambda chain, flow, event: events.append((flow, event)))
    ctx = ctx_for(node, fail={"c": "zmn"})
    with pytest.raises(Conflict) as info:
        await node.flows.chain("make-thing").run(ctx)
    err = info.value
    assert err.code == "THING.BUSY"  # the original error, with the failing step named
    assert err.details["flow"] == "c"
    assert err.details["chain"] == "make-thing"
    assert err.field == "uuid"
    assert err.message == "c: the thing is busy"
    assert LOG == ["run a", "run b", "run c", "rollback b", "rollback a"]
    assert events == [
        ("a", "run"),
        ("a", "done"),
        ("b", "run"),
        ("b", "done"),
        ("c", "run"),
        ("c", "fail"),
        ("b", "rollback"),
        ("a", "rollback"),
    ]
    row = record(node, ctx.record_uuid)
    assert row.state == "RolledBack"
    assert json.loads(row.doneFlows) == []
    assert row.currentFlow is None
    assert row.error == "c: THING.BUSY: the thing is busy"


async def test_first_step_failure_rolls_back_nothing(node: Node) -> None:
    ctx = ctx_for(node, fail={"a": "plain"})
    with pytest.raises(OperationFailed) as info:
        await node.flows.chain("make-thing").run(ctx)
    assert info.value.code == "FLOW.STEP_FAILED"
    assert info.value.details == {"flow": "a", "chain": "make-thing"}
    assert "RuntimeError: disk on fire" in info.value.message
    assert LOG == ["run a"]
    assert record(node, ctx.record_uuid).state == "RolledBack"


async def test_rollback_failure_keeps_rolling_back_and_raises_the_original(node: Node) -> None:
    ctx = ctx_for(node, fail={"c": "plain"}, rollback_fails="b")
    with pytest.raises(OperationFailed) as info:
        await node.flows.chain("make-thing").run(ctx)
    assert info.value.details["flow"] == "c"
    assert LOG == ["run a", "run b", "run c", "rollback b", "rollback a"]
    assert record(node, ctx.record_uuid).state == "RollbackFailed"


async def test_progress_goes_to_the_job(node: Node) -> None:
    principal = node.admin_principal()
    await node.bus.start()

    async def work(handle: Any) -> Any:
        ctx = FlowContext(Call(node, principal, "MakeThing", handle))
        await node.flows.chain("make-thing").run(ctx)
        return {"record": ctx.record_uuid}

    job_uuid, task = node.jobs.submit("MakeThing", {}, principal, work)
    result = await task
    with node.db.tx() as s:
        job = s.get(JobVO, job_uuid)
        assert job is not None
        assert (job.state, job.progress, job.progressText) == ("Succeeded", 100, "c")
        assert s.get(FlowRecordVO, result["record"]).jobUuid == job_uuid  # type: ignore[union-attr]


async def test_chains_in_flight_share_commits_and_each_record_is_durable_in_time(
    node: Node,
) -> None:
    """Group commit: the records of 20 chains in flight go in shared transactions, yet when
    a step runs, the previous step's result and this step's intent are in the database."""

    class Probe(Step):
        name = "probe"

        async def run(self, ctx: FlowContext) -> None:
            row = record(node, ctx.record_uuid)  # the intent of this step is durable
            assert (row.currentFlow, json.loads(row.doneFlows)) == ("probe", ["a"])
            await super().run(ctx)

    node.flows.add_chain("probed", [A, Probe, C])
    writer = node.flows.writer
    writes, batches = writer.writes, writer.batches
    ctxs = [ctx_for(node, n=i) for i in range(20)]
    await asyncio.gather(*(node.flows.chain("probed").run(ctx) for ctx in ctxs))
    for ctx in ctxs:
        row = record(node, ctx.record_uuid)
        assert (row.state, row.currentFlow) == ("Done", None)
        assert json.loads(row.doneFlows) == ["a", "probe", "c"]
        assert json.loads(row.data)["ran"] == ["a", "probe", "c"]
    # insert, 3 steps, Done: 5 saves per chain; the saves of one chain between two commits
    # are one write of its latest row (the probe's read commits mid-chain: at least 2), and
    # the 100 saves go in one transaction per probe's read (each commits the turn) and a last
    assert 40 <= writer.writes - writes < 100
    assert writer.batches - batches <= 21


async def test_each_record_write_is_awaited_where_turns_share_no_transaction(
    tmp_path: Path,
) -> None:
    """An in-memory SQLite (as a server database): no turn transaction to ride, so every
    save is its own group-committed write, durable when the step goes on."""
    node = build_node(tmp_path / "mem", [FlowService], memory=True)
    try:

        class Probe(Step):
            name = "probe"

            async def run(self, ctx: FlowContext) -> None:
                row = record(node, ctx.record_uuid)
                assert (row.currentFlow, json.loads(row.doneFlows)) == ("probe", ["a"])
                await super().run(ctx)

        node.flows.add_chain("probed", [A, Probe, C])
        writer = node.flows.writer
        ctx = ctx_for(node)
        await node.flows.chain("probed").run(ctx)
        row = record(node, ctx.record_uuid)
        assert (row.state, json.loads(row.doneFlows)) == ("Done", ["a", "probe", "c"])
        assert writer.pending == {}
        assert writer.writes == 5  # insert, 3 steps, Done: each written on its own
    finally:
        node.db.dispose()


def test_config_replaces_a_chains_steps(tmp_path: Path) -> None:
    node = build_node(tmp_path / "h", [FlowService], conf={"flowchain.make-thing": "a, d ,c"})
    assert node.flows.chain("make-thing").names == ["a", "d", "c"]
    assert node.flows.chain("other").names == ["d"]
    assert node.flows.describe() == {"make-thing": ["a", "d", "c"], "other": ["d"]}


async def test_configured_chain_runs_the_configured_steps(tmp_path: Path) -> None:
    LOG.clear()
    node = build_node(tmp_path / "h", [FlowService], conf={"flowchain.make-thing": "c,a"})
    await node.flows.chain("make-thing").run(ctx_for(node))
    assert LOG == ["run c", "run a"]


def test_unknown_flow_in_config_is_invalid_argument(tmp_path: Path) -> None:
    node = build_node(tmp_path / "h", [FlowService], conf={"flowchain.make-thing": "a,nosuch"})
    with pytest.raises(InvalidArgument) as info:
        node.flows.chain("make-thing")
    assert info.value.field == "flowchain.make-thing"
    assert "nosuch" in info.value.message
    assert "known: a, b, c, d" in info.value.message


def test_plugin_inserts_a_step(node: Node) -> None:
    node.flows.insert("make-thing", Extra, after="a")
    assert node.flows.chain("make-thing").names == ["a", "extra", "b", "c"]
    node.flows.insert("other", Extra, after="missing")
    assert node.flows.chain("other").names == ["d", "extra"]


def test_a_chain_run_before_an_insert_sees_the_inserted_step_after_it(node: Node) -> None:
    first = node.flows.chain("make-thing")
    assert first.names == ["a", "b", "c"]
    node.flows.insert("make-thing", Extra, after="b")
    again = node.flows.chain("make-thing")
    assert again.names == ["a", "b", "extra", "c"]
    # every run gets its own flow objects, as before the classes were cached
    assert all(x is not y for x, y in zip(first.flows, again.flows, strict=False))
    node.flows.add_chain("make-thing", [C])
    assert node.flows.chain("make-thing").names == ["c"]
