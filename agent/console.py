"""Serial console streams: a VM's console bridged to the management node's connection.

``POST /v1/vm/console {"uuid": ..., "force": false}`` is signed and checked like every
command. When the driver opened the console the agent answers ``101 Switching Protocols``
(``Upgrade: zagent-console``) and from then on the same TCP (or TLS) connection carries the
console's raw bytes in both directions until either side closes it. Errors before that are
ordinary JSON error answers: ``VM_INSTANCE.CONSOLE_BUSY`` (409) when another session holds
the console and ``force`` is false, ``VM_INSTANCE.INVALID_STATE`` when the VM is not running.

A driver's console is a :class:`ConsoleChannel`: something ``select`` can wait on, with a
non-blocking ``read``. :func:`pump` moves bytes between it and the socket in the handler's
thread, so a console costs one agent thread while it is attached.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from typing import Any, Protocol

from agent import validate as v
from zmn.api.errors import NotFound

log = logging.getLogger("zagent.console")

UPGRADE = "zagent-console"
CHUNK = 65536


class ConsoleChannel(Protocol):
    """One attached console. ``fileno`` becomes readable when ``read`` has something."""

    def fileno(self) -> int: ...

    def read(self) -> bytes | None:
        """What the guest printed since the last call (``b""``: nothing yet), or None once
        the console is gone (the VM stopped, or another session took it over)."""

    def write(self, data: bytes) -> None:
        """Type ``data`` into the console."""

    def close(self) -> None:
        """Detach (idempotent)."""


def _readable_now(sock: socket.socket) -> bool:
    # TLS may hold decrypted bytes that select() cannot see
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def pump(sock: socket.socket, channel: ConsoleChannel, *, poll: float = 1.0) -> str:
    """Bridge ``sock`` and ``channel`` until one side ends; returns which one did."""
    ended = "client"
    try:
        sock.settimeout(None)
        while True:
            ready = [sock] if _readable_now(sock) else []
            if not ready:
                ready, _, _ = select.select([sock, channel], [], [], poll)
            if channel in ready:
                out = channel.read()
                if out is None:
                    ended = "console"
                    break
                if out:
                    sock.sendall(out)
            if sock in ready:
                data = sock.recv(CHUNK)
                if not data:
                    break
                channel.write(data)
    except (OSError, ValueError) as exc:  # ValueError: the socket was closed under us (fd -1)
        log.info("console connection ended: %s", exc)
    finally:
        channel.close()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return ended


CHANNEL = "$console"  # key of an answer that upgrades the connection (never sent as JSON)


class ConsoleCommands:
    """How an operator reaches a guest: ``/v1/vm/console`` (the serial console, upgraded to
    a byte stream), ``/v1/vm/graphics`` (address, port and password of the VNC/SPICE
    console) and ``/v1/vm/probe`` (does a TCP port of the guest answer from this host)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def routes(self) -> dict[tuple[str, str], Any]:
        from agent.commands import Route

        return {
            ("POST", "/v1/vm/console"): Route(self.console, upgrade=True),
            ("POST", "/v1/vm/graphics"): Route(self.graphics),
            ("POST", "/v1/vm/probe"): Route(self.probe),
        }

    def console(self, body: dict[str, Any], _query: dict[str, str]) -> dict[str, Any]:
        uuid = v.uuid(body.get("uuid"), "uuid")
        force = v.boolean(body.get("force", False), "force")
        return {CHANNEL: self.driver.open_console(uuid, force)}

    def graphics(self, body: dict[str, Any], _query: dict[str, str]) -> dict[str, Any]:
        uuid = v.uuid(body.get("uuid"), "uuid")
        info = self.driver.graphics(uuid)
        if info is None:
            raise NotFound(
                f"VM {uuid} has no graphical console (consoleMode none)",
                code="VM_INSTANCE.NO_GRAPHICS",
                uuid=uuid,
            )
        return {"uuid": uuid, **info}

    def probe(self, body: dict[str, Any], _query: dict[str, str]) -> dict[str, Any]:
        ip = str(v.ip_any(body.get("ip"), "ip"))
        port = v.integer(body.get("port", 22), "port", lo=1, hi=65535)
        timeout = v.integer(body.get("timeoutMs", 2000), "timeoutMs", lo=50, hi=10000) / 1000
        try:
            with socket.create_connection((ip, port), timeout=timeout):
                return {"ip": ip, "port": port, "open": True}
        except OSError as exc:
            return {"ip": ip, "port": port, "open": False, "reason": str(exc)}
