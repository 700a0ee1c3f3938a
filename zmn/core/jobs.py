"""Jobs: long API calls run in the background, waited on, detached from or followed.

A job row is written before the work starts: queued in the flow records' group commit
(:class:`~zmn.core.flow.RecordWriter`) when the job is submitted, and awaited by the job's task
before it runs the work, so the rows of the jobs submitted in one turn of the event loop
share a transaction. Progress and the final state are published on
``/job/<uuid>`` and ``/job/state/change``. A client that detached can ``WaitJob`` later.

Every job has a time limit: the caller's, else the global config ``job/defaultTimeout`` (0
turns the default off). A job that runs out is cancelled with ``handle.timed_out`` set, so a
flow chain it was running rolls its done steps back (see ``zmn.core.flow``) before the job
ends Failed with ``JOB.TIMEOUT``; a job never stays Running.

``CancelJob`` asks a running job to stop (``handle.cancel_requested``): a flow chain it runs
checks before each step, rolls its done steps back and raises :class:`JobCanceled`, and the
job ends ``Canceled``. A job past its last step (or running no chain) finishes as it would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, insert, select, update

from zmn.api.errors import InternalError, NotFound, OperationFailed, Timeout, ZmnError
from zmn.core import jsontext
from zmn.core.db import new_uuid, utcnow
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.models import JobVO
from zmn.core.state import StateMachine

if TYPE_CHECKING:
    from zmn.core.bus import Principal
    from zmn.core.node import Node

log = logging.getLogger("zmn.jobs")

JOB_STATES = ["Running", "Succeeded", "Failed", "Interrupted", "Canceled"]
FINAL_JOB_STATES = tuple(s for s in JOB_STATES if s != "Running")
# for the catalogue (clients offer CancelJob on running jobs only); the manager sets states
JOB_STATE = StateMachine(
    "Job",
    {
        ("Running", "succeed"): "Succeeded",
        ("Running", "fail"): "Failed",
        ("Running", "interrupt"): "Interrupted",
        ("Running", "cancel"): "Canceled",
    },
    {"cancel": {"Running"}},
)


class JobCanceled(OperationFailed):
    """A job stopped at a flow step because ``CancelJob`` asked it to (its steps rolled back)."""

    default_code = "JOB.CANCELED"


DEFAULT_TIMEOUT = GlobalConfigDef(
    "job",
    "defaultTimeout",
    3600,
    "int",
    "seconds a job may run when its API sets no limit; then it is cancelled (its flow chain"
    " rolled back) and fails with JOB.TIMEOUT (0: no default limit)",
    min=0,
)


class JobHandle:
    def __init__(
        self, manager: JobManager, uuid: str, name: str, recorded: asyncio.Future[None]
    ) -> None:
        self.manager = manager
        self.recorded = recorded  # done when the job's row is durable
        self.uuid = uuid
        self.name = name
        self.percent = 0
        self.text = ""
        self.timed_out = False  # set just before the job is cancelled for running too long
        self.cancel_requested = False  # CancelJob: stop at the next flow step
        self._persisted_at = time.monotonic()  # the row was written at submit

    async def progress(self, percent: int, text: str = "", **extra: Any) -> None:
        """Progress is kept in memory (``GetJob``/``QueryJob`` overlay it on running jobs) and
        written to the row at most every ``PROGRESS_PERSIST_INTERVAL`` seconds (so other
        nodes see long jobs move) and with the final state."""
        self.percent = max(0, min(100, percent))
        self.text = text
        now = time.monotonic()
        if now - self._persisted_at >= PROGRESS_PERSIST_INTERVAL:
            self._persisted_at = now
            self.manager.node.db_write(
                update(JobVO)
                .where(JobVO.uuid == self.uuid)
                .values(progress=self.percent, progressText=text, lastOpDate=utcnow())
            )
        await self.manager.node.bus.publish(
            f"/job/{self.uuid}",
            {
                "jobUuid": self.uuid,
                "name": self.name,
                "progress": self.percent,
                "text": text,
                **extra,
            },
        )

    def overlay(self, inv: dict[str, Any]) -> None:
        """Put the in-memory progress on the inventory of this (running) job."""
        if inv.get("state") == "Running":
            inv["progress"] = self.percent
            inv["progressText"] = self.text or inv.get("progressText")


# seconds between progress writes of one running job (the final state always writes)
PROGRESS_PERSIST_INTERVAL = 5.0


_JOBS = cast(Table, JobVO.__table__)
_INSERT_JOB = insert(_JOBS)
_FINISH_JOB = (
    update(_JOBS)
    .where(_JOBS.c.uuid == bindparam("_uuid"))
    .values(
        {
            c: bindparam(c)
            for c in ("state", "lastOpDate", "progress", "progressText", "result", "error")
        }
    )
)


def _outcome_recorded(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def job_inventory(row: JobVO) -> dict[str, Any]:
    return {
        "uuid": row.uuid,
        "name": row.name,
        "state": row.state,
        "progress": row.progress,
        "progressText": row.progressText,
        "resourceUuid": row.resourceUuid,
        "accountUuid": row.accountUuid,
        "managementNodeUuid": row.managementNodeUuid,
        "result": json.loads(row.result) if row.result else None,
        "error": json.loads(row.error) if row.error else None,
        "createDate": row.createDate.isoformat(timespec="milliseconds"),
        "lastOpDate": row.lastOpDate.isoformat(timespec="milliseconds"),
    }


class JobManager:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.handles: dict[str, JobHandle] = {}
        self.finished = 0
        node.global_config.declare(DEFAULT_TIMEOUT)

    def default_timeout(self) -> float:
        return float(self.node.global_config.values.get(DEFAULT_TIMEOUT.key, 0) or 0)

    @property
    def in_flight(self) -> int:
        return len(self.tasks)

    def submit(
        self,
        name: str,
        args: dict[str, Any],
        principal: Principal,
        work: Callable[[JobHandle], Awaitable[Any]],
        *,
        resource_uuid: str | None = None,
        timeout: float = 0,
        job_uuid: str | None = None,
    ) -> tuple[str, asyncio.Task[Any]]:
        uuid = job_uuid or new_uuid()
        if not timeout:
            timeout = self.default_timeout()
        recorded = self.node.flows.writer.submit(  # queued now: written even if no one waits
            _INSERT_JOB,
            {
                "uuid": uuid,
                "name": name,
                "state": "Running",
                "args": jsontext.dumps(args),
                "progress": 0,
                "progressText": None,
                "result": None,
                "error": None,
                "resourceUuid": resource_uuid,
                "accountUuid": principal.accountUuid,
                "managementNodeUuid": self.node.uuid,
                "timeout": int(timeout),
            },
        )
        handle = JobHandle(self, uuid, name, recorded)
        self.handles[uuid] = handle
        task = asyncio.get_running_loop().create_task(self._run(handle, work, timeout))
        # a detached job may have no one awaiting it: its outcome is on the job row, so
        # take it from the task (else asyncio logs "Task exception was never retrieved")
        task.add_done_callback(_outcome_recorded)
        self.tasks[uuid] = task
        return uuid, task

    async def _run(
        self, handle: JobHandle, work: Callable[[JobHandle], Awaitable[Any]], timeout: float
    ) -> Any:
        timer = None
        if timeout:
            task = asyncio.current_task()
            assert task is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
            timer = asyncio.get_running_loop().call_later(timeout, self._expire, handle, task)
        try:
            try:
                await handle.recorded  # the row first, then the work
                # the job's start, for whoever follows it (the reply names the job only at
                # its end: a client interrupted before then can still say which job goes on)
                await self.node.bus.publish(
                    f"/job/{handle.uuid}",
                    {"jobUuid": handle.uuid, "name": handle.name, "state": "Running"},
                )
                result = await work(handle)
            finally:
                if timer is not None:
                    timer.cancel()
        except asyncio.CancelledError:
            if not handle.timed_out:
                await self._finish(
                    handle,
                    "Interrupted",
                    None,
                    InternalError("job interrupted by node shutdown", code="JOB.INTERRUPTED"),
                )
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            err: ZmnError = Timeout(
                f"job {handle.name} did not finish in {timeout:g}s", code="JOB.TIMEOUT"
            )
            await self._finish(handle, "Failed", None, err)
            raise err from None
        except ZmnError as exc:
            state = "Canceled" if isinstance(exc, JobCanceled) else "Failed"
            await self._finish(handle, state, None, exc)
            raise
        except Exception as exc:
            log.exception("job %s (%s) failed", handle.uuid, handle.name)
            internal = InternalError(f"{type(exc).__name__}: {exc}")
            await self._finish(handle, "Failed", None, internal)
            raise internal from exc
        else:
            await self._finish(handle, "Succeeded", result, None)
            return result
        finally:
            self.tasks.pop(handle.uuid, None)
            self.handles.pop(handle.uuid, None)
            self.finished += 1

    @staticmethod
    def _expire(handle: JobHandle, task: asyncio.Task[Any]) -> None:
        handle.timed_out = True
        task.cancel()

    async def _finish(
        self, handle: JobHandle, state: str, result: Any, error: ZmnError | None
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "lastOpDate": utcnow(),
            "progress": 100 if state == "Succeeded" else handle.percent,
            # the last progress text is always the newest: the row's is never newer
            "progressText": handle.text or None,
            "result": None if result is None else jsontext.dumps(result),
            "error": None if error is None else jsontext.dumps(error.to_wire()),
        }
        # with the flow records' group commit: durable before the job is seen finished
        await self.node.flows.writer.write(_FINISH_JOB, {"_uuid": handle.uuid, **values})
        data: dict[str, Any] = {"jobUuid": handle.uuid, "name": handle.name, "state": state}
        if error is not None:
            data["error"] = error.to_wire()
        await self.node.bus.publish("/job/state/change", data)
        await self.node.bus.publish(
            f"/job/{handle.uuid}", {**data, "progress": values.get("progress", handle.percent)}
        )

    def request_cancel(self, uuid: str) -> bool:
        """Ask the job running here to stop at its next flow step; False when it does not
        run here."""
        handle = self.handles.get(uuid)
        if handle is None:
            return False
        handle.cancel_requested = True
        return True

    def get(self, uuid: str) -> dict[str, Any]:
        with self.node.db.tx() as s:
            row = s.get(JobVO, uuid)
            if row is None:
                raise NotFound(f"job {uuid!r} not found", code="JOB.NOT_FOUND", field="uuid")
            inv = job_inventory(row)
        self.overlay([inv])
        return inv

    def overlay(self, invs: list[dict[str, Any]]) -> None:
        """In-memory progress of the jobs running here on their inventories."""
        if not self.handles:
            return
        for inv in invs:
            handle = self.handles.get(inv.get("uuid", ""))
            if handle is not None:
                handle.overlay(inv)

    async def wait(self, uuid: str, timeout: float | None) -> dict[str, Any]:
        """The job's inventory once it has finished (or a Timeout error)."""
        task = self.tasks.get(uuid)
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                raise Timeout(
                    f"job {uuid} still running after {timeout:g}s",
                    code="JOB.WAIT_TIMEOUT",
                    jobUuid=uuid,
                ) from None
            except Exception:  # noqa: S110 - the error is recorded on the job
                pass
        return self.get(uuid)

    def mark_interrupted(self) -> int:
        """At start: jobs this node left running when it died are marked Interrupted."""
        with self.node.db.tx() as s:
            rows = s.scalars(
                select(JobVO).where(
                    JobVO.state == "Running", JobVO.managementNodeUuid == self.node.uuid
                )
            ).all()
            for row in rows:
                row.state = "Interrupted"
                row.error = jsontext.dumps(
                    InternalError(
                        "the node stopped while this job ran", code="JOB.INTERRUPTED"
                    ).to_wire()
                )
            return len(rows)

    async def drain(self, timeout: float) -> int:
        """Let running jobs finish for up to ``timeout`` seconds; cancel (park) the rest."""
        tasks = list(self.tasks.values())
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        return len(pending)
