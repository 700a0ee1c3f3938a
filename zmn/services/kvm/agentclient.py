"""The node's client of ``zagent``: signed HTTP/1.1 + JSON over asyncio streams.

With a pool (:class:`~zmn.services.kvm.agentpool.AgentPool`, the node's hosts share one) a
request goes over a kept-alive connection to its agent and leaves it for the next; without
one it opens a connection and closes it (``Connection: close``). A request that finds its
reused connection closed by the agent before any answer came is sent again on a new
connection only when it is idempotent (GET, PUT, DELETE, or a call that says so): a POST
that may have reached the agent is never sent twice, and fails as ``Unavailable`` like any
transport failure. The console's upgraded connection is never pooled.

Every request is signed with the host's secret (:mod:`zmn.api.agentauth`); the agent's
error bodies come back as the same ``ZmnError`` kinds, and a transport failure is
``Unavailable`` (``KVM.AGENT_UNREACHABLE``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable
from typing import Any, TypeVar

from zmn.api import agentauth
from zmn.api.errors import InternalError, Timeout, Unavailable, ZmnError
from zmn.core.fastsql import settle
from zmn.services.kvm.agentpool import AgentPool, Connection

MAX_RESPONSE = 16 * 1024 * 1024
BATCH_PATH = "/v1/batch"  # agent.server: several POST commands in one request
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
T = TypeVar("T")


class NoAnswer(ConnectionError):
    """The connection failed before any byte of the answer arrived."""


class AgentBatch:
    """POST commands queued to go to the agent in one request (:meth:`AgentClient.batch`).

    For commands whose answers the caller does not read: :meth:`post` queues and answers
    ``{}`` at once, so code written against a client (``await x.post(path, body)``) can queue
    instead. The agent runs the steps in order and stops at the first that fails.
    """

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.steps.append({"path": path, "body": body})
        return {}


class AgentClient:
    def __init__(
        self,
        host: str,
        port: int,
        secret: str | bytes,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
        pool: AgentPool | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._secret = secret
        self.timeout = timeout
        self._tls = tls
        self._pool = pool

    def __repr__(self) -> str:
        return f"AgentClient({self.host}:{self.port})"

    async def get(self, path: str, *, timeout: float | None = None) -> dict[str, Any]:
        return await self.request("GET", path, None, timeout=timeout)

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        return await self.request("POST", path, body, timeout=timeout, idempotent=idempotent)

    async def batch(
        self, steps: list[dict[str, Any]], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Run POST commands (``{"path", "body"}``) in one signed request; their answers. The
        first that fails raises its error (details: ``batchStep``, ``path``); the ones after it
        did not run."""
        if len(steps) == 1:
            return [await self.post(steps[0]["path"], steps[0]["body"], timeout=timeout)]
        answer = await self.post(BATCH_PATH, {"steps": steps}, timeout=timeout) if steps else {}
        return list(answer.get("results") or [])

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        """``idempotent``: may be sent again after a kept connection turned out closed
        (default: by the method)."""
        again = method in IDEMPOTENT if idempotent is None else idempotent
        status, payload = await self._bounded(
            self._exchange(method, path, body, again), method, path, timeout
        )
        if 200 <= status < 300:
            return payload
        self._raise_for(status, payload, method, path)
        return payload  # not reached: _raise_for always raises

    async def open_stream(
        self, path: str, body: dict[str, Any], *, timeout: float | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """POST a command the agent answers with ``101 Switching Protocols`` (the serial
        console) and return the connection, which then carries raw bytes both ways."""
        pipe: tuple[asyncio.StreamReader, asyncio.StreamWriter] = await self._bounded(
            self._upgrade(path, body), "POST", path, timeout
        )
        return pipe

    async def _bounded(
        self, work: Awaitable[T], method: str, path: str, timeout: float | None
    ) -> T:
        """``work`` within the timeout; transport failures as the API's error kinds."""
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(work, limit)
        except TimeoutError:
            raise Timeout(
                f"agent {self.host}:{self.port} did not answer {method} {path} in {limit:g} s",
                code="KVM.AGENT_TIMEOUT",
                retryable=True,
            ) from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise Unavailable(
                f"agent {self.host}:{self.port} unreachable ({method} {path}):"
                f" {type(exc).__name__}: {exc}",
                code="KVM.AGENT_UNREACHABLE",
                retryable=True,
            ) from None

    async def _upgrade(
        self, path: str, body: dict[str, Any]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self._tls)
        try:
            status, payload, _keep = await self._send_and_read(
                reader, writer, "POST", path, body, "Upgrade"
            )
            if status == 101:
                return reader, writer
        except BaseException:
            await _close(writer)
            raise
        await _close(writer)
        self._raise_for(status, payload, "POST", path)
        raise ValueError(f"answered {status} instead of switching protocols")

    def _raise_for(self, status: int, payload: dict[str, Any], method: str, path: str) -> None:
        err = payload.get("error")
        if isinstance(err, dict):
            raise ZmnError.from_wire(err)
        raise InternalError(
            f"agent {self.host}:{self.port} answered {status} to {method} {path}",
            code="KVM.AGENT_BAD_ANSWER",
        )

    async def _exchange(
        self, method: str, path: str, body: dict[str, Any] | None, again: bool
    ) -> tuple[int, dict[str, Any]]:
        settle()  # the agent acts on what this turn wrote: commit it first
        if self._pool is None:
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self._tls)
            try:
                status, payload, _keep = await self._send_and_read(
                    reader, writer, method, path, body, "close"
                )
                return status, payload
            finally:
                await _close(writer)
        conn = await self._pool.acquire(self.host, self.port, self._tls)
        try:
            return await self._pooled(conn, method, path, body)
        except NoAnswer:
            if not (conn.reused and again):
                raise
        # the agent closed it while it was kept (restarted, or dropped it as idle): so may
        # it have the others; this request is idempotent, so it goes again on a new one
        self._pool.drop(self.host, self.port)
        conn = await self._pool.acquire(self.host, self.port, self._tls)
        return await self._pooled(conn, method, path, body)

    async def _pooled(
        self, conn: Connection, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        """One request on a pooled connection, which goes back to the pool only when the
        answer was read in full and the agent keeps the connection open."""
        assert self._pool is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        try:
            status, payload, keep = await self._send_and_read(
                conn.reader, conn.writer, method, path, body, "keep-alive"
            )
        except BaseException:
            conn.abort()  # timed out, cancelled or broken halfway: its state is unknown
            raise
        if keep:
            self._pool.release(conn)
        else:
            conn.abort()
        return status, payload

    async def _send_and_read(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        connection: str,
    ) -> tuple[int, dict[str, Any], bool]:
        """Send one signed request (``connection``: the header, ``close``, ``keep-alive`` or
        ``Upgrade``); read the status and, unless it is 101, the JSON body. Also says whether
        the connection may carry another request."""
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "Host": f"{self.host}:{self.port}",
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            "Connection": connection,
            **agentauth.sign(self._secret, method, path, data),
        }
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        try:
            writer.write(head.encode("latin-1") + b"\r\n" + data)
            await writer.drain()
            status_line = await reader.readline()
        except OSError as exc:
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from exc
        if not status_line:
            raise NoAnswer("connection closed before any answer")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
        length: int | None = None
        keep = parts[0] == "HTTP/1.1"
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
        if connection == "Upgrade" and parts[1] == "101":
            return 101, {}, False
        if length is not None:
            if length > MAX_RESPONSE:
                raise ValueError(f"answer of {length} bytes is too large")
            raw = await reader.readexactly(length)
        else:
            raw = await reader.read(MAX_RESPONSE)
            keep = False  # the body ran to the end of the connection
        payload = json.loads(raw) if raw.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("answer is not a JSON object")
        return int(parts[1]), payload, keep


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
