"""A blocking client that lets several threads keep requests in flight on one connection.

``zcli -f FILE --parallel N`` runs N batch lines at a time over the batch's one connection:
each thread sends its request under a lock, then waits for the reply with its ID. Whichever
waiting thread finds no reader becomes the reader for one frame and hands every reply to its
owner (leader/follower), so no extra thread reads the socket. Events are dropped: progress
lines of parallel requests would interleave. Imported only when ``--parallel`` is given.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from zmn.api.errors import Timeout, Unavailable, ZmnError
from zmn.api.wire import read_frame_sync
from zmn.client import Client, request_frame


class PipelinedClient(Client):
    """:class:`Client` whose :meth:`request` may be called from several threads at once."""

    def __init__(
        self, endpoint: str | None = None, session: str | None = None, **_ignored: Any
    ) -> None:
        super().__init__(endpoint, session)  # no on_event: events are dropped
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any] | ZmnError] = {}
        self._waiting: set[int] = set()
        self._wake: dict[int, threading.Event] = {}
        self._reading = False

    def request(
        self,
        api: str,
        args: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        progress: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        with self._send_lock:
            req_id = next(self._ids)
            # no progress events: nobody shows them, and every frame read costs the readers
            frame = request_frame(req_id, api, args, self.session, wait=wait, progress=False)
            with self._cond:
                self._waiting.add(req_id)
                self._wake[req_id] = threading.Event()
            try:
                self.send(frame)
            except ZmnError:
                with self._cond:
                    self._waiting.discard(req_id)
                    self._wake.pop(req_id, None)
                raise
        limit = timeout if timeout is not None else self.timeout
        reply = self._wait(req_id, api, time.monotonic() + limit if limit else None)
        if not reply.get("ok"):
            raise ZmnError.from_wire(reply.get("error") or {})
        return reply

    def send(self, frame: dict[str, Any]) -> None:
        if self._sock is not None and len(self._waiting) > 1:
            # requests in flight: never reconnect under them (their replies would be lost)
            from zmn.api.wire import encode_std

            try:
                self._sock.sendall(encode_std(frame))
            except OSError as exc:
                raise Unavailable(
                    f"cannot send to the management node at {self.endpoint}: {exc}",
                    code="NODE.UNREACHABLE",
                ) from None
            return
        super().send(frame)

    def _wait(self, req_id: int, api: str, deadline: float | None) -> dict[str, Any]:
        """Wait for the reply to ``req_id``: as the reader when nobody reads (reading every
        frame until its own reply comes, waking only the owner of each), else until woken by
        the reader with the reply or with the reader's role to take over."""
        wake = self._wake[req_id]
        try:
            while True:
                wake.clear()
                with self._cond:
                    if req_id in self._replies:
                        break
                    lead = not self._reading
                    self._reading = self._reading or lead
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if lead:
                        self._hand_off(req_id)
                    raise Timeout(
                        f"{api}: no reply within the time limit; the operation may still finish",
                        code="CLIENT.TIMEOUT",
                    )
                if not lead:
                    wake.wait(left)
                    continue
                try:
                    while self._read_one(left) and req_id not in self._replies:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            break
                finally:
                    self._hand_off(req_id)
            with self._cond:
                found = self._replies.pop(req_id)
        finally:
            with self._cond:
                self._waiting.discard(req_id)
                self._replies.pop(req_id, None)
                self._wake.pop(req_id, None)
        if isinstance(found, ZmnError):
            raise found
        return found

    def _hand_off(self, me: int) -> None:
        """Stop reading; wake one other waiter still without its reply to read next."""
        with self._cond:
            self._reading = False
            for other in self._waiting:
                if other != me and other not in self._replies:
                    self._wake[other].set()
                    break

    def _deliver(self, owner: int, reply: dict[str, Any] | ZmnError) -> None:
        self._replies[owner] = reply
        self._wake[owner].set()

    def _read_one(self, left: float | None) -> bool:
        """Read one frame (waiting at most ``left`` seconds for it to start) and hand it to
        its owner; False when the connection failed (every waiter has the error)."""
        import select

        sock = self._sock
        try:
            if sock is None:
                raise Unavailable(
                    f"the management node at {self.endpoint} closed the connection",
                    code="NODE.CONNECTION_CLOSED",
                )
            if not self.buffered():
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    return True  # the caller checks its deadline
            frame = read_frame_sync(sock)
            if frame is None:
                raise Unavailable(
                    f"the management node at {self.endpoint} closed the connection",
                    code="NODE.CONNECTION_CLOSED",
                )
        except (OSError, ZmnError) as exc:
            err = (
                exc if isinstance(exc, ZmnError) else Unavailable(str(exc), code="NODE.UNREACHABLE")
            )
            with self._cond:
                for waiting in self._waiting:
                    self._deliver(waiting, err)
                self.close()
            return False
        if frame.get("type") == "event":
            return True
        with self._cond:
            owner = frame.get("id")
            if owner is None:  # the node could not read a frame: nobody's reply in particular
                failed = ZmnError.from_wire(frame.get("error") or {})
                for waiting in self._waiting:
                    self._deliver(waiting, failed)
            elif owner in self._waiting:
                self._deliver(owner, frame)  # replies to abandoned (timed out) requests drop
        return True
