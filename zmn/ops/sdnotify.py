"""systemd's readiness protocol: a datagram to ``$NOTIFY_SOCKET`` (``Type=notify`` units).

``notify("READY=1")`` once the API answers, ``notify("STOPPING=1")`` when a stop begins. Outside
systemd (no ``NOTIFY_SOCKET``) it does nothing; a socket that fails is logged, never fatal.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("zmn.sdnotify")


def notify(state: str) -> bool:
    """Send ``state`` (``KEY=value`` lines) to the service manager; True if it was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", address, exc)
        return False
