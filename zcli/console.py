"""``zcli vm console NAME [--force]``: the terminal on a VM's serial console.

The console travels on the ordinary API connection (unix socket, TCP or TLS) as a byte
stream (``docs/protocol.md``, "Streams"). The terminal is put in raw mode, so every key
(Ctrl-C included) goes to the guest; ``Ctrl-]`` detaches with exit status 0. When the node
ends the stream (the VM stopped, or another session took the console over with ``--force``)
the reason goes to stderr and the exit status is 1.
"""

from __future__ import annotations

import base64
import os
import select
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from zmn.api.errors import EXIT_FAILED, EXIT_OK, Unavailable

if TYPE_CHECKING:
    from zmn.client import Client

ESCAPE = b"\x1d"  # Ctrl-]


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on a terminal (restored on the way out); nothing for a pipe or a file."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(
    client: Client,
    vm: str,
    *,
    force: bool = False,
    in_fd: int | None = None,
    out_fd: int | None = None,
    err: TextIO | None = None,
) -> int:
    """Attach until ``Ctrl-]`` (0), the end of input (0) or the end of the stream (1)."""
    in_fd = sys.stdin.fileno() if in_fd is None else in_fd
    out_fd = sys.stdout.fileno() if out_fd is None else out_fd
    err = err or sys.stderr
    reply = client.open_stream("OpenVmConsole", {"uuid": vm, "force": force})
    stream = str(reply["stream"])
    name = (reply.get("result") or {}).get("name") or vm
    err.write(f"Connected to the serial console of {name}. Escape character is ^]\r\n")
    err.flush()
    with raw_terminal(in_fd):
        while True:
            ready = [client.fileno()] if client.buffered() else []
            if not ready:
                ready, _, _ = select.select([client.fileno(), in_fd], [], [])
            if in_fd in ready:
                data = os.read(in_fd, 4096)
                cut = data.find(ESCAPE)
                if cut >= 0 or not data:
                    if cut > 0:
                        client.send_stream(stream, data[:cut])
                    client.end_stream(stream)
                    err.write("\r\ndetached\r\n")
                    return EXIT_OK
                client.send_stream(stream, data)
            if client.fileno() in ready:
                status = _from_node(client, stream, out_fd, err)
                if status is not None:
                    return status


def _from_node(client: Client, stream: str, out_fd: int, err: TextIO) -> int | None:
    frame: dict[str, Any] | None = client.read_frame()
    if frame is None:
        raise Unavailable(
            "the management node closed the connection", code="NODE.CONNECTION_CLOSED"
        )
    if frame.get("type") != "stream" or frame.get("stream") != stream:
        return None  # an event of a subscription: not ours to show here
    data = frame.get("data")
    if data:
        out = base64.b64decode(data)
        while out:
            out = out[os.write(out_fd, out) :]
    if frame.get("end"):
        err.write(f"\r\nconsole closed: {frame.get('reason') or 'by the node'}\r\n")
        return EXIT_FAILED
    return None
