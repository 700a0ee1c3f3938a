"""A domain's serial console through libvirt's console stream (``virDomainOpenConsole``).

The stream is non-blocking and driven by libvirt's event loop (which the driver runs in a
thread): the READABLE callback drains what the guest printed into a bounded buffer and wakes
the agent's pump through a pipe, so the pump waits on one file descriptor like for any
socket. ``VIR_DOMAIN_CONSOLE_SAFE`` makes libvirt refuse a second session on the same
console; ``VIR_DOMAIN_CONSOLE_FORCE`` takes it over, which ends the first stream (its
callback sees HANGUP or ERROR and the first session reads None).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import libvirt

from zmn.api.errors import Conflict, OperationFailed

log = logging.getLogger("zagent.console")

MAX_BUFFER = 1 << 20  # a client that stops reading loses the oldest output beyond this
EVENTS = (
    libvirt.VIR_STREAM_EVENT_READABLE
    | libvirt.VIR_STREAM_EVENT_ERROR
    | libvirt.VIR_STREAM_EVENT_HANGUP
)


class LibvirtConsole:
    """:class:`agent.console.ConsoleChannel` over a libvirt stream."""

    def __init__(self, conn: Any, dom: Any, uuid: str, *, force: bool) -> None:
        self.uuid = uuid
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._eof = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        flags = libvirt.VIR_DOMAIN_CONSOLE_SAFE
        if force:
            flags |= libvirt.VIR_DOMAIN_CONSOLE_FORCE
        try:
            dom.openConsole(None, self.stream, flags)
            self.stream.eventAddCallback(EVENTS, self._on_event, None)
        except libvirt.libvirtError as err:
            self._close_fds()
            message = err.get_error_message() or ""
            if "active console session" in message.lower():
                raise Conflict(
                    f"VM {uuid}: another session holds the console; attach with force to"
                    " take it over",
                    code="VM_INSTANCE.CONSOLE_BUSY",
                    uuid=uuid,
                ) from None
            raise OperationFailed(
                f"VM {uuid}: cannot open the serial console: {message}",
                code="AGENT.CONSOLE_FAILED",
            ) from None

    def _wake(self) -> None:
        with self._lock:  # never write to a closed (and maybe reused) descriptor
            if self._closed:
                return
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass  # already awake: the pipe is full

    def _on_event(self, stream: Any, events: int, _opaque: Any) -> None:
        """Runs in libvirt's event-loop thread: never raise into it."""
        try:
            if events & libvirt.VIR_STREAM_EVENT_READABLE:
                while True:
                    data = stream.recv(65536)
                    if isinstance(data, int):  # -2: nothing more for now
                        break
                    if not data:
                        self._eof = True
                        break
                    with self._lock:
                        self._buf += data
                        if len(self._buf) > MAX_BUFFER:
                            del self._buf[: len(self._buf) - MAX_BUFFER]
            if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
                self._eof = True
        except libvirt.libvirtError as err:
            log.info("console of %s ended: %s", self.uuid, err.get_error_message())
            self._eof = True
        except Exception:
            log.exception("console event of %s failed", self.uuid)
            self._eof = True
        if self._eof:
            try:
                stream.eventRemoveCallback()
            except libvirt.libvirtError:
                pass
        self._wake()

    def fileno(self) -> int:
        return self._wake_r

    def read(self) -> bytes | None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        with self._lock:
            data = bytes(self._buf)
            self._buf.clear()
        if not data and (self._eof or self._closed):
            return None
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view and not self._eof:
            try:
                sent = self.stream.send(bytes(view))
            except libvirt.libvirtError as err:
                log.info("console of %s: send failed: %s", self.uuid, err.get_error_message())
                self._eof = True
                self._wake()
                return
            if sent == -2:  # the stream's buffer is full: the guest reads slowly
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
                continue
            view = view[sent:]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if not self._eof:
            try:
                self.stream.eventRemoveCallback()
            except libvirt.libvirtError:
                pass
        try:
            self.stream.abort()
        except libvirt.libvirtError:
            pass
        with self._lock:
            self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
