"""The hook every mutating API call passes through on its way out (the audit plugin's feed).

:meth:`Node.execute <zmn.core.node.Node.execute>` fills an :class:`ApiCallRecord` as the call
goes (API, caller, peer, decoded message, job, result or error code) and, when the API is a
mutating one, hands it to every :class:`ApiCallObserver` registered as an extension, for
successes and failures alike. Calls refused to a caller without a principal (no session, a
bad one, a failed, rate-limited or busy login: anything anonymous) are bounded: the first
:data:`ANONYMOUS_ROWS` of each :data:`SUMMARY_INTERVAL` get a row each, and the rest of such a
flood only counts, per (peer address, API, error code), into one summary row per key and
interval (``args`` holds ``refusedCalls``; at most :data:`MAX_SUMMARY_KEYS` keys, the rest
under the peer ``(other peers)``) and the node log's summary line
(:data:`zmn.limits.refusals`). With no observer registered (the audit plugin disabled) the
cost is one dictionary look-up per call.

Observers run inline on the event loop after the call, so they must be quick and must not
raise: an exception is logged and the caller still gets its reply. An observer that writes
may queue the write and return a future that is done when it is durable (the audit service
queues its row in the group commit of :class:`~zmn.core.flow.RecordWriter`): the call's reply
waits for it (:func:`settle`), so a row is in the trail when its reply arrives, and the rows
of many concurrent calls share one transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
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
    refused: int = 0  # a summary row: this many anonymous calls refused (see the module doc)


class ApiCallObserver(Protocol):
    """Extension point: told about every mutating API call after it ends. It may return a
    future (done when what it wrote is durable) that the reply waits for; its failure is the
    observer's to log, never the call's."""

    def api_called(self, record: ApiCallRecord) -> asyncio.Future[Any] | None: ...


ANONYMOUS_ROWS = 20  # refused anonymous calls audited one row each per interval
SUMMARY_INTERVAL = 60.0  # seconds a summary row counts
MAX_SUMMARY_KEYS = 100  # (peer, API, code) keys of one interval; more go under OTHER_PEERS
OTHER_PEERS = "(other peers)"


class _Anonymous:
    """Refused anonymous calls of one node: the first :data:`ANONYMOUS_ROWS` of an interval are
    audited one by one; the rest are counted per (peer address, API, error code) and written
    as one summary row each when the interval ends (a timer: also when the flood stopped)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.used, self.since = 0, 0.0
        self.counts: dict[tuple[str, str, str], int] = {}
        self.specs: dict[str, ApiSpec] = {}
        self.timer: asyncio.TimerHandle | None = None

    def admit(self, record: ApiCallRecord) -> bool:
        """True: audit this refusal as its own row; False: it was counted for the summary."""
        now = time.monotonic()
        if now - self.since >= SUMMARY_INTERVAL:
            self.flush()
            self.used, self.since = 0, now
        self.used += 1
        if self.used <= ANONYMOUS_ROWS:
            return True
        from zmn.limits import host_of, refusals

        key = (host_of(record.peer), record.api, record.error or "")
        if key not in self.counts and len(self.counts) >= MAX_SUMMARY_KEYS:
            key = (OTHER_PEERS, record.api, record.error or "")
        self.counts[key] = self.counts.get(key, 0) + 1
        if record.spec is not None:
            self.specs[record.api] = record.spec
        refusals.note(f"{record.error} not audited one by one", record.peer)
        if self.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): the next call flushes
                return False
            self.timer = loop.call_later(max(0.0, self.since + SUMMARY_INTERVAL - now), self.flush)
        return False

    def flush(self) -> None:
        """One summary row per (peer, API, code) counted since the last flush."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        counts, self.counts = self.counts, {}
        started = utcnow() - dt.timedelta(seconds=max(0.0, time.monotonic() - self.since))
        for (peer, api, code), n in counts.items():
            _observe(
                self.node,
                ApiCallRecord(
                    api=api,
                    peer=peer,
                    request_id="",
                    raw_args=None,
                    started=started,
                    spec=self.specs.get(api),
                    error=code,
                    refused=n,
                ),
            )


_anonymous: weakref.WeakKeyDictionary[Node, _Anonymous] = weakref.WeakKeyDictionary()


def flush_refused(node: Node) -> None:
    """Write the summary rows of the refused anonymous calls counted so far (at node stop)."""
    pending = _anonymous.get(node)
    if pending is not None:
        pending.flush()


def notify(node: Node, record: ApiCallRecord) -> list[asyncio.Future[Any]]:
    """Hand a finished mutating call to every observer; read-only and internal calls skip.
    Returns the observers' writes still in flight (see :func:`settle`)."""
    spec = record.spec
    if spec is None or not spec.mutating or spec.internal:
        return []
    who = record.principal
    if record.error is not None and (who is None or not who.accountUuid):  # anonymous, refused
        pending = _anonymous.get(node)
        if pending is None:
            pending = _anonymous[node] = _Anonymous(node)
        if not pending.admit(record):
            return []
    return _observe(node, record)


async def settle(writes: list[asyncio.Future[Any]]) -> None:
    """Wait until the observers' writes of a call are durable (their failures are theirs to
    log: a call never fails because of its audit row)."""
    for done in writes:
        try:
            await done
        except Exception:  # noqa: S110 - logged by the observer that wrote
            pass


def _observe(node: Node, record: ApiCallRecord) -> list[asyncio.Future[Any]]:
    writes = []
    for observer in node.extensions.all(ApiCallObserver):  # type: ignore[type-abstract]
        try:
            done = observer.api_called(record)
        except Exception:  # an observer's failure must not fail the call it observes
            log.exception("API call observer %s failed", type(observer).__name__)
            continue
        if done is not None:
            writes.append(done)
    return writes
