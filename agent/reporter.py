"""Signed pushes from the agent to the management node: task results and VM lifecycle events.

Reports go out in order from one worker thread so that the node sees "started" before
"stopped". A report the node cannot take (down, 5xx) is retried with backoff; after the last
attempt it is dropped and logged, because the node re-syncs VM states from ``/v1/vm/list``
when it reconnects anyway. Every POST is signed with :mod:`zmn.api.agentauth` over the
callback URL's path, so the node verifies it exactly as the agent verifies commands.

Reports that come in a burst go in one POST (``{"type": "batch", "reports": [...]}``): after a
report the worker waits up to ``linger`` (5 ms) for the next one, and again after each that
comes, up to ``BATCH_MAX`` reports, ``BATCH_BYTES`` of JSON or five lingers. A VM start's
"resumed", "started" and task result come within a few milliseconds of each other: one
signed request instead of three, and one nonce the node writes to disk.

The worker keeps its connection to the node open between reports (HTTP/1.1 keep-alive: a VM
start's reports come in a burst) and closes it after ``keep_idle`` seconds without one, before
the node would drop it as idle (``zmn.services.kvm.callback.KEEP_IDLE``). A report whose kept
connection turns out closed goes again at once on a new one; delivery is at least once anyway.

Body::

    {"type": "vm.lifecycle" | "task.result" | "metrics", "hostUuid": ..., "seq": n,
     "time": unix-seconds,
     ...type-specific fields}
    {"type": "batch", "hostUuid": ..., "reports": [report, ...]}
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import queue
import ssl
import threading
import time
import urllib.error
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from zmn.api import agentauth

log = logging.getLogger("zagent.reporter")

BATCH_MAX = 32  # reports in one POST
BATCH_BYTES = 1 << 20  # their JSON at most about this (the node takes 4 MiB)
LINGER = 0.005  # seconds the worker waits for a burst's next report


class Reporter:
    """Queue + worker posting signed JSON reports to ``url``; ``url=None`` drops them."""

    def __init__(
        self,
        url: str | None,
        secret: bytes,
        host_uuid: str,
        *,
        ca_file: str | None = None,
        attempts: int = 5,
        backoff: float = 0.5,
        timeout: float = 10.0,
        max_queue: int = 10_000,
        sleep: Callable[[float], None] = time.sleep,
        keep_idle: float = 2.0,
        linger: float = LINGER,
    ) -> None:
        self.url = url
        self._secret = secret
        self.host_uuid = host_uuid
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout
        self._sleep = sleep
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ctx = (
            ssl.create_default_context(cafile=ca_file)
            if url and url.startswith("https://")
            else None
        )
        self.sent = 0
        self.dropped = 0
        self.keep_idle = keep_idle
        self.linger = linger
        self._conn: http.client.HTTPConnection | None = None
        self._conn_lock = threading.Lock()  # post() may also be called outside the worker
        self.connections = 0  # opened so far

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zagent-reporter", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout``), then stop the worker."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, kind: str, payload: dict[str, Any]) -> None:
        if self.url is None:
            return
        with self._seq_lock:
            self._seq += 1
            body = {"type": kind, "hostUuid": self.host_uuid, "seq": self._seq,
                    "time": time.time(), **payload}  # fmt: skip
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.dropped += 1
            log.error("report queue full; dropped %s report %s", kind, body.get("seq"))

    def _run(self) -> None:
        while True:
            try:
                body = self._queue.get(timeout=self.keep_idle if self._conn else None)
            except queue.Empty:  # quiet: let the connection go before the node drops it
                self._disconnect()
                continue
            if body is None:
                self._disconnect()
                return
            burst, stopping = self._burst(body)
            self._deliver(burst)
            if stopping:
                self._disconnect()
                return

    def _burst(self, first: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """``first`` and the reports that follow it closely; and whether stop() came."""
        burst, size = [first], len(json.dumps(first))
        deadline = time.monotonic() + 5 * self.linger
        while len(burst) < BATCH_MAX and size < BATCH_BYTES:
            wait = min(self.linger, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                body = self._queue.get(timeout=wait)
            except queue.Empty:
                break
            if body is None:
                return burst, True
            burst.append(body)
            size += len(json.dumps(body))
        return burst, False

    def _deliver(self, burst: list[dict[str, Any]]) -> None:
        body = burst[0] if len(burst) == 1 else {
            "type": "batch", "hostUuid": self.host_uuid, "reports": burst}  # fmt: skip
        seqs = f"{burst[0].get('seq')}" + (f"..{burst[-1].get('seq')}" if len(burst) > 1 else "")
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                self.post(body, keep=True)
                self.sent += len(burst)
                return
            except Exception as exc:  # any failure: retry, then drop
                if attempt == self._attempts:
                    self.dropped += len(burst)
                    log.error("report %s to %s dropped: %s", seqs, self.url, exc)
                    return
                log.warning("report %s failed (%s); retrying in %.1f s", seqs, exc, delay)
                self._sleep(delay)
                delay = min(delay * 2, 30.0)

    def post(self, body: dict[str, Any], *, keep: bool = False) -> dict[str, Any]:
        """One signed POST; raises on a transport error or a non-2xx answer
        (``urllib.error.HTTPError``). ``keep``: leave the connection open for the next (the
        worker does; a one-off caller gets it closed)."""
        assert self.url is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        data = json.dumps(body, separators=(",", ":")).encode()
        parts = urlsplit(self.url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {"Content-Type": "application/json"}
        headers.update(agentauth.sign(self._secret, "POST", target, data))
        with self._conn_lock:
            reused = self._conn is not None
            try:
                status, reason, raw = self._exchange(target, data, headers)
            except (http.client.RemoteDisconnected, ConnectionError) as exc:
                if not reused:
                    raise
                log.debug("kept connection to the node closed (%s); reconnecting", exc)
                status, reason, raw = self._exchange(target, data, headers)
            finally:
                if not keep:
                    self._disconnect_locked()
        if not 200 <= status < 300:
            raise urllib.error.HTTPError(self.url, status, reason, http.client.HTTPMessage(),
                                         io.BytesIO(raw))  # fmt: skip
        return json.loads(raw) if raw.strip() else {}

    def _exchange(
        self, target: str, data: bytes, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        """Send on the kept connection (opening one when there is none); the connection is
        closed after a failure or when the node says it closes it."""
        if self._conn is None:
            parts = urlsplit(str(self.url))
            host, port = parts.hostname or "", parts.port
            self._conn = (
                http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._ctx)
                if parts.scheme == "https"
                else http.client.HTTPConnection(host, port, timeout=self._timeout)
            )
            self.connections += 1
        try:
            self._conn.request("POST", target, body=data, headers=headers)
            resp = self._conn.getresponse()
            raw = resp.read()
        except BaseException:
            self._disconnect_locked()
            raise
        if resp.will_close:
            self._disconnect_locked()
        return resp.status, resp.reason, raw

    def _disconnect(self) -> None:
        with self._conn_lock:
            self._disconnect_locked()

    def _disconnect_locked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
