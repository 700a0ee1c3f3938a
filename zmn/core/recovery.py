"""Recovery of interrupted flow chains at start (and at takeover of an evicted node).

A chain's record holds its data, the step in progress (``currentFlow``) and the steps that
finished (``doneFlows``), written before and after every step (:mod:`zmn.core.flow`). When a
node dies in the middle of a chain the record stays ``Running`` (or ``RollingBack``). The
service owning a chain calls :func:`recover_chains` when it starts (and when it takes over an
evicted node's work), with a :class:`ChainRecovery` per chain: its hooks. The policy:

===========================================  ==========================================
record left                                  recovery
===========================================  ==========================================
``Running``, every step of the chain done,   finished: the chain's ``finish`` hook
and the chain finishes such runs             settles it, the record becomes ``Done``
(``finish_running``)                         and the job ``Succeeded`` with its result
``Done``, its job ``Interrupted`` (the       finished the same way: the chain ran to its
node died in the handler after the chain)    end, only the handler's tail was lost
``Running`` with a step to go, or any chain  rolled back: ``prepare`` may first settle what
without a ``finish`` hook                    the record cannot tell and name the steps to
                                             undo; every done step and the one in progress
                                             are undone in reverse (each undo undoes only
                                             what its run recorded, so undoing a step that
                                             never ran is harmless); the record becomes
                                             ``RolledBack`` (or ``RollbackFailed``), the
                                             job ``Interrupted``, naming the steps undone,
                                             and ``settle`` puts the resource in the state
                                             the failed operation leaves it in
``RollingBack``                              the rollback is carried on the same way
===========================================  ==========================================

Either way no record and no job stays ``Running``. A record of a run this process is
executing right now (``node.flows.live``) is never touched: it is not interrupted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.api.errors import ZmnError
from zmn.core import jsontext
from zmn.core.db import in_slices, utcnow
from zmn.core.flow import FlowContext
from zmn.core.models import FlowRecordVO, JobVO
from zmn.core.reservations import DELETE_OF_RECORD
from zmn.core.service import Call

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.recovery")

# finish(ctx) -> the job's result; None (nothing to finish: the resource moved on) or raising
# leaves the run to the rollback (a Running record) or as it is (a Done record)
Finish = Callable[[FlowContext], Awaitable[dict[str, Any] | None]]
# prepare(ctx, record, steps) -> the steps to undo (it may change ctx.data)
Prepare = Callable[[FlowContext, FlowRecordVO, list[str]], list[str]]
# settle(ctx) after the undo: the resource's state after the failed operation
Settle = Callable[[FlowContext], Awaitable[None]]


@dataclass(frozen=True)
class ChainRecovery:
    """How recovery settles the interrupted runs of one chain (its service's hooks)."""

    finish: Finish | None = None
    # also finish a Running record whose every step was done (False: roll it back; the
    # caller was never answered, so e.g. a VM create cut there is undone)
    finish_running: bool = True
    prepare: Prepare | None = None
    settle: Settle | None = None


@dataclass
class Recovered:
    """What recovery did with one interrupted chain run."""

    chain: str
    record: str
    job: str | None
    outcome: str  # Done | RolledBack | RollbackFailed
    flow: str | None  # the step it stopped at
    undone: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


async def recover_chains(
    node: Node,
    chains: Mapping[str, ChainRecovery] | Sequence[str],
    *,
    of_node: str | None = None,
    scratch: dict[str, Any] | None = None,
    api: str = "RecoverInterruptedOperations",
) -> list[Recovered]:
    """Finish or roll back the runs of ``chains`` a node (this one by default) left open."""
    specs = chains if isinstance(chains, Mapping) else dict.fromkeys(chains, ChainRecovery())
    owner = of_node or node.uuid
    call = Call(node, node.admin_principal(), api)
    with node.db.tx() as s:
        records = list(
            s.scalars(
                select(FlowRecordVO)
                .where(
                    FlowRecordVO.chain.in_(tuple(specs)),
                    FlowRecordVO.state.in_(("Running", "RollingBack")),
                    FlowRecordVO.managementNodeUuid == owner,
                )
                .order_by(FlowRecordVO.createDate)
            )
        )
    out = []
    for rec in records:
        if rec.uuid in node.flows.live:  # running in this process now, not interrupted
            continue
        spec = specs[rec.chain]
        ctx = _context(call, rec, scratch)
        done: list[str] = json.loads(rec.doneFlows or "[]")
        if (
            rec.state == "Running"
            and spec.finish is not None
            and spec.finish_running
            and _complete(node, rec.chain, done)
        ):
            finished = await _finish(node, spec.finish, ctx, rec)
            if finished is not None:
                _close(node, rec.uuid, "Done", None, ctx.data)
                out.append(finished)
                continue
        out.append(await _roll_back(node, spec, ctx, rec, done))
    out += await _finish_done(node, specs, owner, call, scratch)
    return out


def _context(call: Call, rec: FlowRecordVO, scratch: dict[str, Any] | None) -> FlowContext:
    data: dict[str, Any] = json.loads(rec.data or "{}")
    return FlowContext(
        call, data=data, chain=rec.chain, record_uuid=rec.uuid, scratch=dict(scratch or {})
    )


async def _finish(
    node: Node, finish: Finish, ctx: FlowContext, rec: FlowRecordVO
) -> Recovered | None:
    """Run the chain's finish hook; the job succeeds with its result (None when it failed)."""
    try:
        result = await finish(ctx)
    except ZmnError as exc:  # e.g. the resource is gone since
        log.warning("cannot finish %s (record %s): %s", rec.chain, rec.uuid, exc)
        return None
    except Exception:
        log.exception("finishing %s (record %s) after a restart failed", rec.chain, rec.uuid)
        return None
    if result is None:
        return None
    if rec.jobUuid:
        job_succeeded(node, rec.jobUuid, result)
    log.warning("%s was complete when the node stopped: finished", rec.chain)
    return Recovered(rec.chain, rec.uuid, rec.jobUuid, "Done", rec.currentFlow, [], ctx.data)


async def _roll_back(
    node: Node, spec: ChainRecovery, ctx: FlowContext, rec: FlowRecordVO, done: list[str]
) -> Recovered:
    steps = list(done)
    if rec.currentFlow and rec.currentFlow not in steps:
        steps.append(rec.currentFlow)
    undo = spec.prepare(ctx, rec, steps) if spec.prepare is not None else steps
    problems = []
    for index in reversed(range(len(undo))):
        name = undo[index]
        flow_cls = node.flows.flows.get(name)
        if flow_cls is None:
            continue
        try:
            await flow_cls().rollback(ctx)
        except Exception as exc:
            log.exception("rolling back %s/%s after a restart failed", rec.chain, name)
            problems.append(f"{name}: {exc}")
        # the undo's progress, durable before the next undo: a node killed now does not
        # undo this step again at the next recovery
        node.db_write(
            update(FlowRecordVO)
            .where(FlowRecordVO.uuid == rec.uuid)
            .values(
                state="RollingBack",
                currentFlow=None,
                doneFlows=jsontext.dumps(undo[:index]),
                data=jsontext.dumps(ctx.data),
            )
        )
    outcome = "RollbackFailed" if problems else "RolledBack"
    _close(node, rec.uuid, outcome, "interrupted: the node stopped", ctx.data)
    if rec.jobUuid:
        annotate_job(node, rec.jobUuid, rec.chain, rec.currentFlow, steps, problems)
    log.warning(
        "%s was interrupted at %s when the node stopped: %s", rec.chain, rec.currentFlow, outcome
    )
    if spec.settle is not None:
        try:
            await spec.settle(ctx)
        except Exception:
            log.exception("settling %s (record %s) after its rollback failed", rec.chain, rec.uuid)
    return Recovered(rec.chain, rec.uuid, rec.jobUuid, outcome, rec.currentFlow, steps, ctx.data)


async def _finish_done(
    node: Node,
    specs: Mapping[str, ChainRecovery],
    owner: str,
    call: Call,
    scratch: dict[str, Any] | None,
) -> list[Recovered]:
    """The runs whose chain was done when the node died but whose handler had not answered:
    the record is ``Done``, its job ``Interrupted``. Their finish hook does the handler's tail
    and the job succeeds (a retrying client finds the result too)."""
    finishing = tuple(name for name, spec in specs.items() if spec.finish is not None)
    if not finishing:
        return []
    with node.db.tx() as s:
        jobs = list(
            s.scalars(
                select(JobVO.uuid).where(
                    JobVO.state == "Interrupted", JobVO.managementNodeUuid == owner
                )
            )
        )
        records: list[FlowRecordVO] = []
        for some in in_slices(jobs):
            records.extend(
                s.scalars(
                    select(FlowRecordVO).where(
                        FlowRecordVO.jobUuid.in_(some),
                        FlowRecordVO.chain.in_(finishing),
                        FlowRecordVO.state == "Done",
                    )
                )
            )
    out = []
    for rec in records:
        finish = specs[rec.chain].finish
        assert finish is not None  # noqa: S101 - selected by it above (type narrowing)
        finished = await _finish(node, finish, _context(call, rec, scratch), rec)
        if finished is not None:
            out.append(finished)
    return out


def _complete(node: Node, chain: str, done: list[str]) -> bool:
    try:
        names = node.flows.chain(chain).names
    except Exception:  # the chain is configured differently now: do not guess
        return False
    return bool(names) and set(names) <= set(done)


def _close(node: Node, record: str, state: str, error: str | None, data: dict[str, Any]) -> None:
    node.db_write(
        update(FlowRecordVO)
        .where(FlowRecordVO.uuid == record)
        .values(state=state, currentFlow=None, error=error, data=jsontext.dumps(data))
    )
    if state == "Done":  # what the run reserved now belongs to the rows it made
        with node.db.engine.begin() as conn:
            conn.execute(DELETE_OF_RECORD, {"_record": record})


def job_succeeded(node: Node, job: str, result: dict[str, Any]) -> None:
    """An interrupted (or running) job that recovery finished succeeds with ``result``."""
    node.db_write(
        update(JobVO)
        .where(JobVO.uuid == job, JobVO.state.in_(("Running", "Interrupted")))
        .values(
            state="Succeeded",
            progress=100,
            result=jsontext.dumps(result),
            error=None,
            lastOpDate=utcnow(),
        )
    )


def annotate_job(
    node: Node,
    job: str,
    chain: str,
    flow: str | None,
    undone: list[str],
    problems: list[str] | None = None,
) -> None:
    """The interrupted job says why it ended and what recovery did (never left Running)."""
    error = {
        "code": "JOB.INTERRUPTED",
        "message": f"the node stopped while this job ran {chain}"
        + (f" at step {flow}" if flow else "")
        + "; the steps it had done were rolled back at restart"
        + (f" (undo failed: {'; '.join(problems)})" if problems else ""),
        "details": {"chain": chain, "flow": flow, "rolledBack": list(reversed(undone))},
        "retryable": True,
    }
    node.db_write(
        update(JobVO)
        .where(JobVO.uuid == job, JobVO.state.in_(("Running", "Interrupted")))
        .values(state="Interrupted", error=jsontext.dumps(error), lastOpDate=utcnow())
    )
