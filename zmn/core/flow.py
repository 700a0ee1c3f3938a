"""Flow chains: ordered steps with ``run`` and ``rollback``, persisted as they go.

A chain runs its flows in order. When one fails, the flows that finished roll back in reverse
order and the original error is raised with the failing step named (``details.flow``). The
record in ``flow_record`` is written before each step (the intent) and after it, so a node
that restarts knows what was in progress. Chains are named; ``zmn.conf`` may replace a
chain's flow list (``flowchain.<name>=flowA,flowB``) with any registered flows.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import update

from zmn.api.errors import InvalidArgument, OperationFailed, ZmnError
from zmn.core.db import new_uuid
from zmn.core.models import FlowRecordVO

if TYPE_CHECKING:
    from zmn.core.node import Node
    from zmn.core.service import Call

log = logging.getLogger("zmn.flow")


class Flow:
    """One step. ``run`` does it; ``rollback`` undoes it (called only if ``run`` finished)."""

    name: ClassVar[str] = ""

    async def run(self, ctx: FlowContext) -> None:
        raise NotImplementedError

    async def rollback(self, ctx: FlowContext) -> None:
        """Undo ``run``. The default does nothing (for steps with no side effect)."""


@dataclass
class FlowContext:
    """Shared by the flows of one run: the call and a JSON-able data dict."""

    call: Call
    data: dict[str, Any] = field(default_factory=dict)
    chain: str = ""
    record_uuid: str = ""
    # Objects that do not persist (ORM-free helpers, caches) go here, not in ``data``.
    scratch: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[str, str, str], None]  # (chain, flow, event: run|done|fail|rollback)


class FaultInjected(OperationFailed):
    """Raised by a flow that a test told to fail (``InjectFlowFault``)."""

    default_code = "TEST.FAULT_INJECTED"


@dataclass
class FaultPlan:
    """Fail the next ``count`` runs of ``flow`` in ``chain`` (``*`` matches any chain)."""

    chain: str
    flow: str
    count: int = 1
    when: str = "before"  # before | after: fail before the step runs, or after it finished


class FlowRegistry:
    """Registered flows and chains of the loaded services."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.flows: dict[str, type[Flow]] = {}
        self.chains: dict[str, list[str]] = {}
        self.listeners: list[Listener] = []
        self.faults: list[FaultPlan] = []

    def take_fault(self, chain: str, flow: str, when: str) -> FaultPlan | None:
        """The fault planned for this step, if any (and count it as used)."""
        for plan in self.faults:
            if (
                plan.flow == flow
                and plan.chain in (chain, "*")
                and plan.when == when
                and plan.count > 0
            ):
                plan.count -= 1
                if plan.count == 0:
                    self.faults.remove(plan)
                return plan
        return None

    def add_flow(self, flow: type[Flow]) -> None:
        self.flows[flow.name] = flow

    def add_chain(self, name: str, flows: list[type[Flow]]) -> None:
        for f in flows:
            self.add_flow(f)
        self.chains[name] = [f.name for f in flows]

    def insert(self, chain: str, flow: type[Flow], *, after: str | None = None) -> None:
        """A plugin adds a step to another service's chain."""
        self.add_flow(flow)
        steps = self.chains[chain]
        steps.insert(steps.index(after) + 1 if after in steps else len(steps), flow.name)

    def chain(self, name: str) -> FlowChain:
        configured = self.node.config.get(f"flowchain.{name}")
        names = [n.strip() for n in configured.split(",")] if configured else self.chains[name]
        unknown = [n for n in names if n not in self.flows]
        if unknown:
            raise InvalidArgument(
                f"flow chain {name} names unknown flows {', '.join(unknown)}"
                f" (known: {', '.join(sorted(self.flows))})",
                field=f"flowchain.{name}",
            )
        return FlowChain(name, [self.flows[n]() for n in names], self)

    def describe(self) -> dict[str, list[str]]:
        return {name: self.chain(name).names for name in self.chains}


class FlowChain:
    def __init__(self, name: str, flows: list[Flow], registry: FlowRegistry) -> None:
        self.name = name
        self.flows = flows
        self.registry = registry

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.flows]

    def _notify(self, flow: str, event: str) -> None:
        for listener in self.registry.listeners:
            listener(self.name, flow, event)

    def _save(self, ctx: FlowContext, **values: Any) -> None:
        if "data" in values:
            values["data"] = json.dumps(values["data"], default=str)
        with self.registry.node.db.tx() as s:
            s.execute(
                update(FlowRecordVO).where(FlowRecordVO.uuid == ctx.record_uuid).values(**values)
            )

    async def run(self, ctx: FlowContext) -> dict[str, Any]:
        node = self.registry.node
        ctx.chain = self.name
        ctx.record_uuid = new_uuid()
        with node.db.tx() as s:
            s.add(
                FlowRecordVO(
                    uuid=ctx.record_uuid,
                    chain=self.name,
                    jobUuid=ctx.call.job_uuid,
                    state="Running",
                    data=json.dumps(ctx.data, default=str),
                    managementNodeUuid=node.uuid,
                )
            )
        done: list[Flow] = []
        total = len(self.flows)
        for index, flow in enumerate(self.flows):
            self._save(ctx, currentFlow=flow.name, data=ctx.data)
            self._notify(flow.name, "run")
            try:
                if self.registry.faults and self.registry.take_fault(
                    self.name, flow.name, "before"
                ):
                    raise FaultInjected(f"fault injected before {flow.name}", flow=flow.name)
                await flow.run(ctx)
                if self.registry.faults and self.registry.take_fault(self.name, flow.name, "after"):
                    done.append(flow)  # it ran: roll it back too
                    raise FaultInjected(f"fault injected after {flow.name}", flow=flow.name)
            except Exception as exc:
                self._notify(flow.name, "fail")
                await self._rollback(ctx, done, flow, exc)
                raise _step_error(self.name, flow.name, exc) from exc
            except asyncio.CancelledError:
                # a job that ran out of time is cancelled: undo its steps now, in its slot;
                # other cancellations (node shutdown) leave the record to start-up recovery
                job = ctx.call.job
                if job is not None and getattr(job, "timed_out", False):
                    self._notify(flow.name, "fail")
                    # the step in progress too: each undo only undoes what its run recorded
                    await self._rollback(ctx, [*done, flow], flow, TimeoutError("job timed out"))
                raise
            done.append(flow)
            self._save(ctx, doneFlows=json.dumps([f.name for f in done]), data=ctx.data)
            self._notify(flow.name, "done")
            await ctx.call.progress(int((index + 1) * 100 / total), flow.name)
        self._save(ctx, state="Done", currentFlow=None, data=ctx.data)
        return ctx.data

    async def _rollback(
        self, ctx: FlowContext, done: list[Flow], failed: Flow, exc: BaseException
    ) -> None:
        self._save(ctx, state="RollingBack", error=f"{failed.name}: {exc}")
        problems = []
        for flow in reversed(done):
            self._notify(flow.name, "rollback")
            try:
                await flow.rollback(ctx)
            except Exception as rb_exc:  # keep rolling back the others
                log.exception("rollback of %s/%s failed", self.name, flow.name)
                problems.append(f"{flow.name}: {rb_exc}")
            self._save(ctx, doneFlows=json.dumps([f.name for f in done[: done.index(flow)]]))
        state = "RolledBack" if not problems else "RollbackFailed"
        self._save(ctx, state=state, currentFlow=None, data=ctx.data)


def _step_error(chain: str, step: str, exc: BaseException) -> ZmnError:
    if isinstance(exc, ZmnError):
        exc.details.setdefault("flow", step)
        exc.details.setdefault("chain", chain)
        if not exc.message.startswith(f"{step}:"):
            exc.message = f"{step}: {exc.message}"
        return exc
    return OperationFailed(
        f"{step}: {type(exc).__name__}: {exc}", code="FLOW.STEP_FAILED", flow=step, chain=chain
    )
