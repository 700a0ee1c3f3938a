"""Flow chains: ordered steps with ``run`` and ``rollback``, persisted as they go.

A chain runs its flows in order. When one fails, the flows that finished roll back in reverse
order and the original error is raised with the failing step named (``details.flow``). The
record in ``flow_record`` is durable before a step's effects are (the intent) and after it,
so a node that restarts knows what was in progress: one write between two steps does both
(after a crash right after a step, recovery also undoes the next, which never ran: harmless,
as every undo only undoes what its run recorded). On a SQLite file the record rides the loop
turn's own commit, written right before it; elsewhere the writes of all the chains in flight
are group-committed and awaited (:class:`RecordWriter`). Chains are named; ``zmn.conf`` may
replace a chain's flow list (``flowchain.<name>=flowA,flowB``) with any registered flows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

from sqlalchemy import Table, bindparam, insert, update

from zmn.api.errors import InvalidArgument, OperationFailed, ZmnError
from zmn.core import jsontext
from zmn.core.db import new_uuid
from zmn.core.fastsql import check_lost, when_committed
from zmn.core.jobs import JobCanceled
from zmn.core.models import FlowRecordVO
from zmn.core.reservations import DELETE_OF_RECORD

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

    def reservation_key(self, step: str) -> str | None:
        """The key under which ``step`` of this run takes capacity (:mod:`zmn.core.reservations`),
        the same at recovery; None outside a recorded run."""
        if not self.record_uuid:
            return None
        self.scratch[_RESERVED] = True
        return f"{self.record_uuid}:{step}"


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


class RecordWriter:
    """Group commit of flow records: the writes of every chain in flight that are queued in
    one turn of the event loop go to the database in one transaction (consecutive writes with
    the same statement as one ``executemany``), and each writer is woken when it is durable.

    Where no loop turn's transaction is shared (a server database) a chain waits for its
    write before it goes on, so the record is durable before the step's side effects, as
    with a transaction per write; with many chains in flight it costs a fraction of the
    commits. On a SQLite file :meth:`save` needs no wait (see there).
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.queue: list[tuple[Any, dict[str, Any], asyncio.Future[None]]] = []
        self.scheduled = False
        self.batches = 0
        self.writes = 0
        # record UUID -> its latest row, written right before the turn's transaction commits
        self.pending: dict[str, _Pending] = {}

    def save(
        self, record: str, row: dict[str, Any], insert: dict[str, Any] | None, also: list[Any]
    ) -> asyncio.Future[None] | None:
        """Write a flow record's latest ``row`` (``insert``: the columns of a record not yet
        written). Where the loop's turns share a transaction (SQLite file) the row is written
        right before that transaction commits, so the steps' own writes commit with it or
        after it and never before it (whatever lets the outside see a write commits first:
        a reply, an agent request, another node); several steps between two commits are one
        write, and nothing waits: returns None. Elsewhere the write is queued (group commit)
        and the future is done when it is durable."""
        check_lost()  # this task's earlier writes were lost: its flow must not go on
        entry = self.pending.pop(record, None)
        if entry is not None:  # not written yet: it still needs its insert and extra writes
            insert = insert or entry.insert
            also = [*entry.also, *also]
        if self.node.db.before_commit(self, self._write_pending):
            self.pending[record] = _Pending(row, insert, also)
            return None
        if insert is not None:
            return self.submit(_INSERT, {**insert, **row}, *also)
        return self.submit(_UPDATE, {"_uuid": record, **row}, *also)

    def _write_pending(self, conn: Any) -> None:
        """The before-commit hook: every pending record in the turn's transaction (None: the
        transaction was lost, and so are they; their chains are told)."""
        pending, self.pending = self.pending, {}
        if conn is None or not pending:
            return
        inserts = [{**e.insert, **e.row} for e in pending.values() if e.insert is not None]
        updates = [{"_uuid": u, **e.row} for u, e in pending.items() if e.insert is None]
        for statement, params in ((_INSERT, inserts), (_UPDATE, updates)):
            if params:
                conn.execute(statement, params if len(params) > 1 else params[0])
        for entry in pending.values():
            for statement, params in entry.also:
                conn.execute(statement, params)
        self.batches += 1
        self.writes += len(pending)

    async def write(
        self, statement: Any, params: dict[str, Any], *also: tuple[Any, dict[str, Any]]
    ) -> None:
        """Queue a write (and ``also`` writes, in the same transaction when the batch commits
        as one); back when it is durable (a failure of an ``also`` write alone is ignored)."""
        await self.submit(statement, params, *also)

    def submit(
        self, statement: Any, params: dict[str, Any], *also: tuple[Any, dict[str, Any]]
    ) -> asyncio.Future[None]:
        """:meth:`write` for a caller that cannot await now: the future is done when the
        write is durable (queued at once: it is written whether or not anyone awaits)."""
        check_lost()  # this task's earlier writes were lost: its flow must not go on
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.queue.append((statement, params, done))
        for extra, extra_params in also:
            self.queue.append((extra, extra_params, done))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush)
        return done

    def flush(self) -> None:
        self.scheduled = False
        batch, self.queue = self.queue, []
        if not batch:
            return
        self.batches += 1
        self.writes += len(batch)
        try:
            with self.node.db.fast() as conn:
                start = 0
                while start < len(batch):
                    end = start + 1
                    while end < len(batch) and batch[end][0] is batch[start][0]:
                        end += 1
                    params: Any = [p for _, p, _ in batch[start:end]]
                    conn.execute(batch[start][0], params if len(params) > 1 else params[0])
                    start = end
        except Exception:  # one bad write must not fail the others: each on its own
            log.warning("a batch of %d flow record writes failed; retrying one by one", len(batch))
            failed: dict[int, Exception] = {}
            for index, (statement, params, _done) in enumerate(batch):
                try:
                    with self.node.db.fast() as conn:
                        conn.execute(statement, params)
                except Exception as exc:
                    failed[index] = exc
            self._durable(batch, failed)
            return
        self._durable(batch, {})

    def _durable(self, batch: list[Any], failed: dict[int, Exception]) -> None:
        """Wake the writers when the batch is committed: with the loop turn's own commit
        when one is open (every write of the turn in one), else now."""
        when_committed(partial(self._wake, batch, failed))

    @staticmethod
    def _wake(batch: list[Any], failed: dict[int, Exception], lost: Exception | None) -> None:
        for index, (_, _, done) in enumerate(batch):
            if done.done():
                continue
            err = failed.get(index) or lost
            if err is not None:
                done.set_exception(err)
            else:
                done.set_result(None)


@dataclass
class _Pending:
    """A flow record's row waiting for the turn's commit (``insert``: not written yet)."""

    row: dict[str, Any]
    insert: dict[str, Any] | None
    also: list[Any]


class FlowRegistry:
    """Registered flows and chains of the loaded services."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.writer = RecordWriter(node)
        self.flows: dict[str, type[Flow]] = {}
        self.chains: dict[str, list[str]] = {}
        self.listeners: list[Listener] = []
        self.faults: list[FaultPlan] = []
        # records of the runs this process is executing: never "interrupted" (recovery)
        self.live: set[str] = set()
        # (chain, its zmn.conf value) -> its flow classes, checked: a chain runs per create;
        # emptied when flows or chains are added
        self._resolved: dict[tuple[str, str], list[type[Flow]]] = {}

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
        self._resolved.clear()

    def add_chain(self, name: str, flows: list[type[Flow]]) -> None:
        for f in flows:
            self.add_flow(f)
        self.chains[name] = [f.name for f in flows]
        self._resolved.clear()

    def insert(self, chain: str, flow: type[Flow], *, after: str | None = None) -> None:
        """A plugin adds a step to another service's chain."""
        self.add_flow(flow)
        steps = self.chains[chain]
        steps.insert(steps.index(after) + 1 if after in steps else len(steps), flow.name)
        self._resolved.clear()

    def chain(self, name: str) -> FlowChain:
        """A run of the chain: fresh instances of its flows (``zmn.conf`` may replace them)."""
        configured = self.node.config.get(f"flowchain.{name}")
        classes = self._resolved.get((name, configured))
        if classes is None:
            classes = self._resolved[(name, configured)] = self._flow_classes(name, configured)
        return FlowChain(name, [cls() for cls in classes], self)

    def _flow_classes(self, name: str, configured: str) -> list[type[Flow]]:
        names = [n.strip() for n in configured.split(",")] if configured else self.chains[name]
        unknown = [n for n in names if n not in self.flows]
        if unknown:
            raise InvalidArgument(
                f"flow chain {name} names unknown flows {', '.join(unknown)}"
                f" (known: {', '.join(sorted(self.flows))})",
                field=f"flowchain.{name}",
            )
        return [self.flows[n] for n in names]

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

    async def _save(self, ctx: FlowContext, **values: Any) -> None:
        """Write the changed fields of the record; back when the write is durable. The
        ``Done`` write drops the run's capacity reservations in the same transaction."""
        if "data" in values:
            values["data"] = jsontext.dumps(values["data"])
        saved = ctx.scratch.setdefault(_SAVED, {})
        changed = {k: v for k, v in values.items() if k not in saved or saved[k] != v}
        if not changed:
            return
        saved.update(changed)
        row = {c: saved.get(c, _DEFAULTS[c]) for c in _COLUMNS}
        also = []
        if changed.get("state") == "Done" and ctx.scratch.get(_RESERVED):
            also.append((DELETE_OF_RECORD, {"_record": ctx.record_uuid}))
        durable = self.registry.writer.save(ctx.record_uuid, row, None, also)
        if durable is not None:
            await durable

    async def run(self, ctx: FlowContext) -> dict[str, Any]:
        """Run the flows in order. The record is durable before each step runs (the intent:
        its name in ``currentFlow``) and after it (``doneFlows``, with the data it produced);
        one write does both between two steps, and nothing is written when nothing changed."""
        node = self.registry.node
        ctx.chain = self.name
        ctx.record_uuid = new_uuid()
        names = self.names
        first = names[0] if names else None
        data = jsontext.dumps(ctx.data)
        ctx.scratch[_SAVED] = row = {
            "state": "Running",
            "currentFlow": first,
            "doneFlows": "[]",
            "data": data,
            "error": None,
        }
        done: list[Flow] = []
        in_progress: Flow | None = self.flows[0] if self.flows else None
        rolling_back = False
        total = len(self.flows)
        self.registry.live.add(ctx.record_uuid)
        try:
            insert = {
                "uuid": ctx.record_uuid,
                "chain": self.name,
                "jobUuid": ctx.call.job_uuid,
                "managementNodeUuid": node.uuid,
            }
            durable = self.registry.writer.save(ctx.record_uuid, dict(row), insert, [])
            if durable is not None:
                await durable
            for index, flow in enumerate(self.flows):
                in_progress = flow
                job = ctx.call.job
                if job is not None and getattr(job, "cancel_requested", False):
                    # CancelJob: stop before this step and undo the done ones
                    rolling_back = True
                    in_progress = None
                    error = JobCanceled(
                        f"job {job.uuid} was canceled before step {flow.name}"
                        f" ({len(done)} done step(s) rolled back)",
                        flow=flow.name,
                        chain=self.name,
                        jobUuid=job.uuid,
                    )
                    await self._rollback(ctx, done, flow, error, state="Canceled")
                    raise error
                # the intent (this step's name) is on the record already: written with the
                # previous step's result, or with the insert for the first step (nothing runs
                # in between that could change the data, so nothing is written here)
                self._notify(flow.name, "run")
                try:
                    if self.registry.faults and self.registry.take_fault(
                        self.name, flow.name, "before"
                    ):
                        raise FaultInjected(f"fault injected before {flow.name}", flow=flow.name)
                    await flow.run(ctx)
                    if self.registry.faults and self.registry.take_fault(
                        self.name, flow.name, "after"
                    ):
                        done.append(flow)  # it ran: roll it back too
                        raise FaultInjected(f"fault injected after {flow.name}", flow=flow.name)
                except Exception as exc:
                    rolling_back = True
                    self._notify(flow.name, "fail")
                    await self._rollback(ctx, done, flow, exc)
                    raise _step_error(self.name, flow.name, exc) from exc
                done.append(flow)
                in_progress = None
                # done, with its data, and the next step's intent in the same write
                following = names[index + 1] if index + 1 < total else flow.name
                await self._save(
                    ctx,
                    doneFlows=jsontext.dumps([f.name for f in done]),
                    currentFlow=following,
                    data=ctx.data,
                )
                self._notify(flow.name, "done")
                if job is not None:  # with the step's number, for live progress lines
                    await job.progress(
                        int((index + 1) * 100 / total), flow.name, step=index + 1, steps=total
                    )
            await self._save(ctx, state="Done", currentFlow=None, data=ctx.data)
        except asyncio.CancelledError:
            # a job that ran out of time is cancelled (in a step, or waiting for its record to
            # be durable): undo its steps now, in its slot; other cancellations (node
            # shutdown) leave the record to start-up recovery
            job = ctx.call.job
            failed = in_progress or (done[-1] if done else None)
            if (
                not rolling_back
                and failed is not None
                and job is not None
                and getattr(job, "timed_out", False)
            ):
                self._notify(failed.name, "fail")
                # the step in progress too: each undo only undoes what its run recorded
                steps = [*done, in_progress] if in_progress is not None else done
                await self._rollback(ctx, steps, failed, TimeoutError("job timed out"))
            raise
        finally:
            self.registry.live.discard(ctx.record_uuid)
        return ctx.data

    async def _rollback(
        self,
        ctx: FlowContext,
        done: list[Flow],
        failed: Flow,
        exc: BaseException,
        *,
        state: str = "RolledBack",
    ) -> None:
        await self._save(
            ctx, state="RollingBack", currentFlow=failed.name, error=f"{failed.name}: {exc}"
        )
        problems = []
        for flow in reversed(done):
            self._notify(flow.name, "rollback")
            try:
                await flow.rollback(ctx)
            except Exception as rb_exc:  # keep rolling back the others
                log.exception("rollback of %s/%s failed", self.name, flow.name)
                problems.append(f"{flow.name}: {rb_exc}")
            # the undo's progress and what it changed in the data, durable before the next
            # undo (a node killed now does not undo this step again at recovery)
            await self._save(
                ctx,
                doneFlows=jsontext.dumps([f.name for f in done[: done.index(flow)]]),
                data=ctx.data,
            )
        await self._save(
            ctx, state=state if not problems else "RollbackFailed", currentFlow=None, data=ctx.data
        )


# the record's progress, written with Core (cached statements) rather than an ORM session
_SAVED = "_flow_record_saved"  # ctx.scratch key: the values last written
_RESERVED = "_flow_reserved"  # ctx.scratch key: a step took capacity under a reservation key
_COLUMNS = ("state", "currentFlow", "doneFlows", "data", "error")
_DEFAULTS: dict[str, Any] = {
    "state": "Running",
    "currentFlow": None,
    "doneFlows": "[]",
    "data": "{}",
    "error": None,
}
_TABLE = cast(Table, FlowRecordVO.__table__)
_INSERT = insert(_TABLE)
_UPDATE = (
    update(_TABLE)
    .where(_TABLE.c.uuid == bindparam("_uuid"))
    .values({c: bindparam(c) for c in _COLUMNS})
)


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
