"""agent.console.pump when the connection is closed under it by another thread (the agent's
server closes its connections when it stops): the pump ends quietly and detaches."""

from __future__ import annotations

import os
import socket

from agent.console import pump


class PipeChannel:
    """A console whose first read closes the client's socket (as the stopping server does)."""

    def __init__(self, sock: socket.socket) -> None:
        self.r, self.w = os.pipe()
        self.sock = sock
        self.closed = False
        os.write(self.w, b"x")  # readable at once

    def fileno(self) -> int:
        return self.r

    def read(self) -> bytes | None:
        os.read(self.r, 4096)
        self.sock.close()  # fileno() is now -1: the next select() sees it
        return b""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.r)
            os.close(self.w)


def test_a_socket_closed_under_the_pump_ends_it_without_an_exception() -> None:
    a, b = socket.socketpair()
    channel = PipeChannel(a)
    try:
        assert pump(a, channel, poll=0.01) == "client"
    finally:
        b.close()
    assert channel.closed
