"""Keep-alive connections from the node to its agents, kept idle between requests.

A VM create sends several commands to one agent within a second (bridges, network state,
start); a TCP connect and teardown for each cost the node more than the request itself. The
pool keeps at most ``per_host`` idle connections for each agent address. A request that finds
none opens a new one (as many as are in flight: the agent caps its own connections), and on
return a connection beyond ``per_host`` is closed, so a burst leaves no more than that open.

A kept connection is handed out again only while it is fresh: younger than ``idle`` seconds
since its last answer (below the agent's ``header_timeout``, after which the agent drops an
idle connection, so the node is the side that closes first) and not closed by the other end
meanwhile. Whether a request that fails on a reused connection may be sent again is the
caller's call (:class:`zmn.services.kvm.agentclient.AgentClient`), never the pool's.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

PER_HOST = 4
IDLE = 4.0  # seconds; the agent's header_timeout (10 s by default) must be longer

Key = tuple[str, int, int]  # host, port, id of the TLS context (0: plain TCP)


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    key: Key
    reused: bool = False  # it carried a request before (it may have gone stale since)
    idle_since: float = field(default=0.0)

    def usable(self, now: float, idle: float) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and now - self.idle_since < idle
        )

    def abort(self) -> None:
        """Close without waiting (a connection in an unknown state is never reused)."""
        self.writer.transport.abort()


class AgentPool:
    """Idle keep-alive connections by agent address; see the module docstring."""

    def __init__(self, per_host: int = PER_HOST, idle: float = IDLE) -> None:
        self.per_host = per_host
        self.idle = idle
        self._idle: dict[Key, list[Connection]] = {}
        self.opened = 0  # connections opened (the figure the benchmark compares)
        self.reused = 0  # requests sent on a kept connection

    @staticmethod
    def key(host: str, port: int, tls: ssl.SSLContext | None) -> Key:
        return (host, port, 0 if tls is None else id(tls))

    async def acquire(self, host: str, port: int, tls: ssl.SSLContext | None) -> Connection:
        """A fresh kept connection to ``host:port``, else a new one."""
        key = self.key(host, port, tls)
        kept = self._idle.get(key)
        now = asyncio.get_running_loop().time()
        while kept:
            conn = kept.pop()  # the most recently used: the likeliest to be alive
            if conn.usable(now, self.idle):
                self.reused += 1
                conn.reused = True
                return conn
            conn.abort()
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        self.opened += 1
        return Connection(reader, writer, key)

    def release(self, conn: Connection) -> None:
        """Keep ``conn`` for the next request (it answered in full and stays open)."""
        kept = self._idle.setdefault(conn.key, [])
        now = asyncio.get_running_loop().time()
        for stale in [c for c in kept if not c.usable(now, self.idle)]:
            kept.remove(stale)
            stale.abort()
        if len(kept) >= self.per_host or conn.writer.is_closing():
            conn.abort()
            return
        conn.idle_since = now
        kept.append(conn)

    def drop(self, host: str, port: int | None = None) -> None:
        """Close the kept connections to ``host`` (on ``port``, or every port)."""
        for key in [k for k in self._idle if k[0] == host and port in (None, k[1])]:
            for conn in self._idle.pop(key):
                conn.abort()

    def idle_count(self, host: str, port: int) -> int:
        return sum(len(v) for k, v in self._idle.items() if k[:2] == (host, port))

    def close(self) -> None:
        for kept in self._idle.values():
            for conn in kept:
                conn.abort()
        self._idle.clear()
