"""The fake driver's serial console: a socket pair with a tiny line-echoing "guest".

It behaves like a guest's ``ttyS0`` behind libvirt's console stream as far as the relay can
tell: a banner on attach, typed bytes echoed, a completed line answered, one session at a
time unless forced (the forced-out session reads None), and the console ends when the VM
stops.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable

BANNER = "\r\nFake guest {name} on ttyS0\r\nfake login: "


class FakeConsole:
    """:class:`agent.console.ConsoleChannel` over one end of a socket pair."""

    def __init__(self, uuid: str, running: Callable[[], bool], name: str = "") -> None:
        self.uuid = uuid
        self._ours, self._guest = socket.socketpair()
        self._ours.setblocking(False)
        self._running = running
        self.closed = False
        self._guest.sendall(BANNER.format(name=name or uuid).encode())
        threading.Thread(target=self._guest_loop, name=f"fake-tty-{uuid[:8]}", daemon=True).start()

    def _guest_loop(self) -> None:
        line = bytearray()
        try:
            while self._running() and not self.closed:
                ready, _, _ = select.select([self._guest], [], [], 0.1)
                if not ready:
                    continue
                data = self._guest.recv(4096)
                if not data:
                    break
                for byte in data:
                    if byte in (10, 13):
                        self._guest.sendall(b"\r\n" + self.answer(line.decode(errors="replace")))
                        line.clear()
                    else:
                        line.append(byte)
                        self._guest.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            self._guest.close()

    @staticmethod
    def answer(line: str) -> bytes:
        if line.startswith("echo "):
            return line[5:].encode() + b"\r\n# "
        return f"fake: {line}\r\n# ".encode() if line else b"# "

    def fileno(self) -> int:
        return self._ours.fileno()

    def read(self) -> bytes | None:
        try:
            data = self._ours.recv(65536)
        except BlockingIOError:
            return b""
        except OSError:
            return None
        return data or None

    def write(self, data: bytes) -> None:
        try:
            self._ours.setblocking(True)
            self._ours.sendall(data)
        except OSError:
            pass
        finally:
            self._ours.setblocking(False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ours.close()
