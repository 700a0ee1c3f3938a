"""Signed pushes from the agent to the management node: task results and VM lifecycle events.

Reports go out in order from one worker thread so that the node sees "started" before
"stopped". A report the node cannot take (down, 5xx) is retried with backoff; after the last
attempt it is dropped and logged, because the node re-syncs VM states from ``/v1/vm/list``
when it reconnects anyway. Every POST is signed with :mod:`zmn.api.agentauth` over the
callback URL's path, so the node verifies it exactly as the agent verifies commands.

Body::

    {"type": "vm.lifecycle" | "task.result" | "metrics", "hostUuid": ..., "seq": n,
     "time": unix-seconds,
     ...type-specific fields}
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from zmn.api import agentauth

log = logging.getLogger("zagent.reporter")


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
            body = self._queue.get()
            if body is None:
                return
            self._deliver(body)

    def _deliver(self, body: dict[str, Any]) -> None:
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                self.post(body)
                self.sent += 1
                return
            except Exception as exc:  # any failure: retry, then drop
                if attempt == self._attempts:
                    self.dropped += 1
                    log.error("report %s to %s dropped: %s", body.get("seq"), self.url, exc)
                    return
                log.warning(
                    "report %s failed (%s); retrying in %.1f s", body.get("seq"), exc, delay
                )
                self._sleep(delay)
                delay = min(delay * 2, 30.0)

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One signed POST; raises on a transport error or a non-2xx answer."""
        assert self.url is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        data = json.dumps(body, separators=(",", ":")).encode()
        parts = urlsplit(self.url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {"Content-Type": "application/json"}
        headers.update(agentauth.sign(self._secret, "POST", target, data))
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")  # noqa: S310 - http(s) only, checked in config
        with urllib.request.urlopen(req, timeout=self._timeout, context=self._ctx) as resp:  # noqa: S310
            raw = resp.read()
        return json.loads(raw) if raw.strip() else {}
