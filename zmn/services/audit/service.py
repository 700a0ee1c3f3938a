"""The audit trail: every mutating API call, who made it, with what, when and how it ended.

The service implements the core's :class:`~zmn.core.audit.ApiCallObserver` extension point:
:meth:`Node.execute <zmn.core.node.Node.execute>` hands it each finished mutating call,
successes and failures (refused sessions included), and it inserts one row into
``audit_log``. Nothing updates or deletes those rows: there is no API for it, and no delete
cascades to them. ``QueryAuditLog`` (made by the query service) reads them: admins see every
row, an account its own rows, a user of an account the rows of that user.

The row is queued right after the call in the group commit of the flow records
(:class:`~zmn.core.flow.RecordWriter`: the rows of all the calls ending in one turn of the event
loop share one transaction) and the call's reply waits until it is durable, so a call is in
the trail before its reply reaches the client; a failing insert is logged and never fails the
call. A summary row of refused anonymous calls is written at once, in its own transaction.
Disabling the plugin (``plugins.disabled=audit``) removes the observer and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from zmn.core.audit import ApiCallObserver, ApiCallRecord, flush_refused
from zmn.core.bus import Principal
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Service
from zmn.services.audit.models import AuditLogVO
from zmn.services.audit.record import audit_row

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.audit")


def own_rows(principal: Principal) -> list[Any]:
    """A normal account sees its own calls; a user of it only that user's calls."""
    if principal.userUuid:
        return [AuditLogVO.userUuid == principal.userUuid]
    return [AuditLogVO.accountUuid == principal.accountUuid]


def decode_args(_session: Any, invs: list[dict[str, Any]]) -> None:
    """``args`` is stored as JSON text; clients get an object."""
    for inv in invs:
        if isinstance(inv.get("args"), str):
            try:
                inv["args"] = json.loads(inv["args"])
            except ValueError:
                pass


class AuditService(Service):
    name = "audit"
    summary = "append-only audit trail of mutating API calls"

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.active = False
        self.written = 0
        self.failed = 0
        self._registered = False
        self._insert = insert(AuditLogVO)

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "AuditLog",
                AuditLogVO,
                self.name,
                "audit-log",
                columns=["id", "createDate", "apiName", "accountName", "result", "peer"],
                refs={
                    "accountUuid": RefSpec("Account", on_delete="keep"),
                    "userUuid": RefSpec("User", on_delete="keep"),
                    "jobUuid": RefSpec("Job", on_delete="keep"),
                    "managementNodeUuid": RefSpec("ManagementNode", on_delete="keep"),
                },
                docs={
                    "id": "position in the trail (increasing)",
                    "createDate": "when the call arrived (UTC)",
                    "apiName": "the API called",
                    "resourceType": "the API's resource type",
                    "resourceUuid": "the resource acted on or created, when known",
                    "args": "arguments, Secret() parameters masked; only names if refused early",
                    "accountUuid": "the caller's account (empty: no valid session)",
                    "accountName": "the caller's account name at the time of the call",
                    "userUuid": "the caller's user, when it logged in as a user",
                    "sessionId": "SHA-256 fingerprint of the session (never the session itself)",
                    "peer": "unix:uid=U,pid=P or tcp:HOST:PORT / tls:HOST:PORT",
                    "result": "ok, or the error code",
                    "jobUuid": "the job of a long API",
                    "requestId": "the request id the client chose",
                    "durationMs": "time the node spent on the call",
                },
                access_filter=own_rows,
                inventory_hook=decode_args,
                summary="one mutating API call: who, what, when, result",
            )
        )

    async def start(self) -> None:
        if not self._registered:
            self.node.extensions.add(ApiCallObserver, self)  # type: ignore[type-abstract]
            self._registered = True
        self.active = True

    async def stop(self) -> None:
        flush_refused(self.node)  # the summary rows counted so far
        self.active = False

    def api_called(self, record: ApiCallRecord) -> asyncio.Future[None] | None:
        if not self.active:
            return None
        try:
            row = audit_row(record, self.node.uuid)
            if record.refused:  # a summary row (rare; flush_refused is synchronous)
                with self.node.db.engine.begin() as conn:
                    conn.execute(self._insert, row)
                self.written += 1
                return None
            done = self.node.flows.writer.submit(self._insert, row)
        except Exception:  # the call already happened; losing its row must not fail it
            self.failed += 1
            log.exception("could not write the audit row of %s", record.api)
            return None
        done.add_done_callback(functools.partial(self._written, record.api))
        return done

    def _written(self, api: str, done: asyncio.Future[None]) -> None:
        if done.cancelled():  # its caller went away; the row is written all the same
            return
        exc = done.exception()
        if exc is None:
            self.written += 1
        else:
            self.failed += 1
            log.error("could not write the audit row of %s", api, exc_info=exc)
