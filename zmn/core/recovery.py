"""Recovery of interrupted flow chains at start (and at takeover of an evicted node).

A chain's record holds its data, the step in progress (``currentFlow``) and the steps that
finished (``doneFlows``), written before and after every step (:mod:`zmn.core.flow`). When a
node dies in the middle of a chain the record stays ``Running`` (or ``RollingBack``). The
service owning the chain calls :func:`recover_chains` when it starts; the policy is:

===========================================  ==========================================
record left                                  recovery
===========================================  ==========================================
``Running``, every step of the chain done    finished: the service's ``finish`` hook
                                             settles it, the record becomes ``Done``
                                             and the job ``Succeeded`` with its result
``Running`` with a step to go, or any chain  rolled back: every done step and the one in
without a ``finish`` hook                    progress are undone in reverse (each undo
                                             undoes only what its run recorded, so undoing
                                             a step that never ran is harmless); the
                                             record becomes ``RolledBack`` (or
                                             ``RollbackFailed``) and the job
                                             ``Interrupted``, naming the steps undone
``RollingBack``                              the rollback is carried on the same way
===========================================  ==========================================

Either way no record and no job stays ``Running``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.core.db import utcnow
from zmn.core.flow import FlowContext
from zmn.core.models import FlowRecordVO, JobVO
from zmn.core.reservations import DELETE_OF_RECORD
from zmn.core.service import Call

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.recovery")

# finish(ctx) -> the job's result; raising makes recovery roll the chain back instead
Finish = Callable[[FlowContext], Awaitable[dict[str, Any]]]


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
    chains: Sequence[str],
    *,
    of_node: str | None = None,
    finish: dict[str, Finish] | None = None,
    scratch: dict[str, Any] | None = None,
    api: str = "RecoverInterruptedOperations",
) -> list[Recovered]:
    """Finish or roll back the runs of ``chains`` a node (this one by default) left open."""
    call = Call(node, node.admin_principal(), api)
    with node.db.tx() as s:
        records = list(
            s.scalars(
                select(FlowRecordVO)
                .where(
                    FlowRecordVO.chain.in_(tuple(chains)),
                    FlowRecordVO.state.in_(("Running", "RollingBack")),
                    FlowRecordVO.managementNodeUuid == (of_node or node.uuid),
                )
                .order_by(FlowRecordVO.createDate)
            )
        )
    out = []
    for rec in records:
        if rec.uuid in node.flows.live:  # running in this process now, not interrupted
            continue
        data: dict[str, Any] = json.loads(rec.data or "{}")
        done: list[str] = json.loads(rec.doneFlows or "[]")
        ctx = FlowContext(
            call, data=data, chain=rec.chain, record_uuid=rec.uuid, scratch=dict(scratch or {})
        )
        hook = (finish or {}).get(rec.chain)
        if rec.state == "Running" and hook is not None and _complete(node, rec.chain, done):
            try:
                result = await hook(ctx)
            except Exception:
                log.exception(
                    "finishing %s (record %s) after a restart failed", rec.chain, rec.uuid
                )
            else:
                _close(node, rec.uuid, "Done", None, ctx.data)
                if rec.jobUuid:
                    job_succeeded(node, rec.jobUuid, result)
                out.append(
                    Recovered(rec.chain, rec.uuid, rec.jobUuid, "Done", rec.currentFlow, [], data)
                )
                log.warning("%s was complete when the node stopped: finished", rec.chain)
                continue
        steps = list(done)
        if rec.currentFlow and rec.currentFlow not in steps:
            steps.append(rec.currentFlow)
        problems = []
        for index in reversed(range(len(steps))):
            name = steps[index]
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
                    doneFlows=json.dumps(steps[:index]),
                    data=json.dumps(ctx.data, default=str),
                )
            )
        outcome = "RollbackFailed" if problems else "RolledBack"
        _close(node, rec.uuid, outcome, "interrupted: the node stopped", ctx.data)
        if rec.jobUuid:
            annotate_job(node, rec.jobUuid, rec.chain, rec.currentFlow, steps, problems)
        log.warning(
            "%s was interrupted at %s when the node stopped: %s",
            rec.chain,
            rec.currentFlow,
            outcome,
        )
        out.append(
            Recovered(rec.chain, rec.uuid, rec.jobUuid, outcome, rec.currentFlow, steps, data)
        )
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
        .values(state=state, currentFlow=None, error=error, data=json.dumps(data, default=str))
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
            result=json.dumps(result, default=str),
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
        .values(state="Interrupted", error=json.dumps(error), lastOpDate=utcnow())
    )
