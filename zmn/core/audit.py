"""The hook every mutating API call passes through on its way out (the audit plugin's feed).

:meth:`Node.execute <zmn.core.node.Node.execute>` fills an :class:`ApiCallRecord` as the call
goes (API, caller, peer, decoded message, job, result or error code) and, when the API is a
mutating one, hands it to every :class:`ApiCallObserver` registered as an extension, for
successes and failures alike, refusals before authentication included (the first 20 a
minute of calls refused for want of a valid session; the rest of such a flood only counts in
the node log's summary line, :data:`zmn.limits.refusals`). With no observer
registered (the audit plugin disabled) the cost is one dictionary look-up per call.

Observers run inline on the event loop after the call, so they must be quick (one insert)
and must not raise: an exception is logged and the caller still gets its reply.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from zmn.core.db import utcnow

if TYPE_CHECKING:
    from zmn.api.message import ApiMessage, ApiSpec
    from zmn.core.bus import Principal
    from zmn.core.node import Node

log = logging.getLogger("zmn.audit")


@dataclass(slots=True)
class ApiCallRecord:
    """One API call as the node saw it. Fields stay None when the call failed before them."""

    api: str
    peer: str  # "unix:uid=1000,pid=42", "tcp:10.0.0.5:53122", "" for in-process callers
    request_id: str
    raw_args: Any  # as received: not validated, may hold secrets
    started: dt.datetime = field(default_factory=utcnow)
    spec: ApiSpec | None = None
    principal: Principal | None = None
    message: ApiMessage | None = None  # set once decode_args accepted the arguments
    job_uuid: str | None = None
    result: Any = None
    error: str | None = None  # the error code; None when the call succeeded
    seconds: float = 0.0


class ApiCallObserver(Protocol):
    """Extension point: told about every mutating API call after it ends."""

    def api_called(self, record: ApiCallRecord) -> None: ...


SESSION_REFUSALS = frozenset(
    ("IDENTITY.SESSION_REQUIRED", "IDENTITY.SESSION_INVALID", "IDENTITY.SESSION_EXPIRED")
)


class _Budget:
    """So many rows per window for calls refused for want of a session; an anonymous flood
    gets its first rows recorded and the rest counted in the node log's summary line."""

    def __init__(self, rows: int = 20, window: float = 60.0) -> None:
        self.rows, self.window = rows, window
        self.used, self.since = 0, 0.0

    def take(self) -> bool:
        now = time.monotonic()
        if now - self.since >= self.window:
            self.used, self.since = 0, now
        self.used += 1
        return self.used <= self.rows


_budget = _Budget()


def notify(node: Node, record: ApiCallRecord) -> None:
    """Hand a finished mutating call to every observer; read-only and internal calls skip."""
    spec = record.spec
    if spec is None or not spec.mutating or spec.internal:
        return
    if record.principal is None and record.error in SESSION_REFUSALS and not _budget.take():
        from zmn.limits import refusals

        refusals.note("calls without a valid session not audited", record.peer)
        return
    for observer in node.extensions.all(ApiCallObserver):  # type: ignore[type-abstract]
        try:
            observer.api_called(record)
        except Exception:  # an observer's failure must not fail the call it observes
            log.exception("API call observer %s failed", type(observer).__name__)
