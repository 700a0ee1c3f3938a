"""Jobs as resources: ``QueryJob``, ``GetJob``, ``WaitJob`` over the core job table.

A job belongs to the account that started it (``JobVO.accountUuid``): normal accounts see
and wait on their own jobs only, through the type's access filter, which also hides other
accounts' jobs from name/UUID resolution (so ``WaitJob`` answers NotFound for them).
A job's ``args`` are not exposed: they may hold secrets given to the API.
``CancelJob`` sets the cancel request of a job running here, or publishes it on
``/internal/job/cancel`` for the node that runs it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from zmn.api.errors import Conflict, Timeout, not_found
from zmn.core.bus import Event, Principal
from zmn.core.jobs import JOB_STATE, JOB_STATES
from zmn.core.models import JobVO
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.services.job.api import CancelJob, GetJob, WaitJob

POLL_MAX = 1.0  # seconds between looks at a job that runs on another node
CANCEL_PATH = "/internal/job/cancel"  # a cancel request for the node running the job


def own_jobs(principal: Principal) -> list[Any]:
    return [JobVO.accountUuid == principal.accountUuid]


def decode_results(_session: Any, invs: list[dict[str, Any]]) -> None:
    """Result and error are stored as JSON text; clients get them as objects."""
    for inv in invs:
        for key in ("result", "error"):
            if isinstance(inv.get(key), str):
                try:
                    inv[key] = json.loads(inv[key])
                except ValueError:
                    pass


class JobService(Service):
    name = "job"
    summary = "long-running API calls"
    state_machines = [JOB_STATE]
    error_codes = {
        "JOB.NOT_FOUND": "no job with that UUID (or it belongs to another account)",
        "JOB.WAIT_TIMEOUT": "the job was still running when the wait ended; it may still finish",
        "JOB.TIMEOUT": "the job ran longer than its own time limit and failed",
        "JOB.INTERRUPTED": "the management node stopped while the job ran",
        "JOB.CANCELED": "CancelJob stopped the job before a step; its done steps rolled back",
        "JOB.NOT_RUNNING": "CancelJob on a job that has already finished",
    }

    async def start(self) -> None:
        self.node.bus.subscribe(CANCEL_PATH, self._cancel_event)

    def _cancel_event(self, event: Event) -> None:
        uuid = event.data.get("jobUuid")
        if isinstance(uuid, str):
            self.node.jobs.request_cancel(uuid)

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Job",
                JobVO,
                self.name,
                "job",
                columns=["uuid", "name", "state", "progress", "resourceUuid", "createDate"],
                enums={"state": list(JOB_STATES)},
                docs={
                    "name": "the API the job runs",
                    "progress": "percent done",
                    "resourceUuid": "the resource the API acts on, when it has one",
                    "timeout": "seconds the job may run (0: no limit)",
                },
                refs={
                    "accountUuid": RefSpec("Account", on_delete="keep"),
                    "managementNodeUuid": RefSpec("ManagementNode", on_delete="keep"),
                },
                hidden_fields=("args",),
                access_filter=own_jobs,
                inventory_hook=self._inventory_hook,
                state_field="state",
                summary="a long-running API call",
            )
        )

    def _inventory_hook(self, session: Any, invs: list[dict[str, Any]]) -> None:
        decode_results(session, invs)
        # running jobs keep their progress in memory (see zmn.core.jobs): show it
        self.node.jobs.overlay(invs)

    def _inventory(self, uuid: str) -> dict[str, Any]:
        with self.node.db.tx() as s:
            rt = self.node.resources.get("Job")
            row = s.get(JobVO, uuid)
            if row is None:
                raise not_found("Job", uuid, "uuid")
            return rt.inventories(s, [row])[0]

    @handler(GetJob)
    async def get_job(self, msg: GetJob, call: Call) -> dict[str, Any]:
        return {"inventory": self._inventory(msg.uuid)}

    @handler(CancelJob)
    async def cancel_job(self, msg: CancelJob, call: Call) -> dict[str, Any]:
        inv = self._inventory(msg.uuid)  # NotFound for other accounts' jobs too
        if inv["state"] != "Running":
            raise Conflict(
                f"job {msg.uuid} is {inv['state']}: only a running job can be canceled",
                code="JOB.NOT_RUNNING",
                field="uuid",
                state=inv["state"],
            )
        if not self.node.jobs.request_cancel(msg.uuid):  # it runs on another node
            await self.node.bus.publish(CANCEL_PATH, {"jobUuid": msg.uuid})
        return {"inventory": inv, "cancelRequested": True}

    @handler(WaitJob)
    async def wait_job(self, msg: WaitJob, call: Call) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = None if msg.timeout is None else loop.time() + max(0.0, msg.timeout)
        delay = 0.05
        while True:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            if msg.uuid in self.node.jobs.tasks:  # runs here: wait on the task itself
                try:
                    await self.node.jobs.wait(msg.uuid, remaining)
                except Timeout:
                    raise _still_running(msg.uuid, msg.timeout) from None
                return {"inventory": self._inventory(msg.uuid)}
            inv = self._inventory(msg.uuid)
            if inv["state"] != "Running":
                return {"inventory": inv}
            if remaining is not None and remaining <= 0:
                raise _still_running(msg.uuid, msg.timeout)
            # Runs on another node (or is just finishing): look again soon.
            await asyncio.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, POLL_MAX)


def _still_running(uuid: str, timeout: float | None) -> Timeout:
    return Timeout(
        f"job {uuid} is still running after {timeout or 0:g}s; it may still finish"
        " (WaitJob again, or QueryJob uuid=...)",
        code="JOB.WAIT_TIMEOUT",
        jobUuid=uuid,
    )
