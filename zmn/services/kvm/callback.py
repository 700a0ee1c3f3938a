"""The node's endpoint for what agents push: task results and VM lifecycle reports.

Each agent posts to ``/agent/v1/report/<hostUuid>``, signed with that host's secret. The
signature is checked (missing, forged, stale and replayed reports are refused with 401)
before the body is parsed, and the body must name the same host; only then is the report
handed on. A refused report changes nothing. A body of type ``batch`` carries up to
``MAX_BATCH`` reports of that host (an agent sends a burst, such as a VM start's events and
its task result, as one POST: one signature, one nonce written to disk); they are handed on
one by one, in order. A small HTTP/1.1 server on asyncio streams that
keeps a connection open for the agent's next report (an agent sends its reports one after
the other on one connection) until it has been idle for ``KEEP_IDLE`` seconds, the agent
asks to close, or an answer is not a 200 (the body may not have been read).

Host secrets are kept for ``SECRET_TTL`` seconds after they were read, so a VM start's
reports do not each read the database. A report that does not verify with a kept secret is
checked again with the one read afresh (a secret that changed), and a deleted host's is
dropped at once (:meth:`CallbackServer.forget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from zmn.api import agentauth
from zmn.api.errors import InvalidArgument, NotFound, ZmnError
from zmn.limits import refusals

log = logging.getLogger("zmn.kvm.callback")

PATH_PREFIX = "/agent/v1/report/"
MAX_BODY = 4 * 1024 * 1024
_PATH = re.compile(r"^/agent/v1/report/([0-9a-f]{32})$")
SECRET_TTL = 60.0
MAX_CONNECTIONS = 256  # connections open at once (kept idle ones too); more are closed unread
KEEP_IDLE = 5.0  # seconds an idle kept connection waits for the next report (agent: 2 s)
REQUEST_TIMEOUT = 30.0  # to receive and handle one report once its first line came
MAX_BATCH = 256  # reports in one batch (an agent sends 32 at most)

SecretLookup = Callable[[str], str | None]
ReportHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class CallbackServer:
    def __init__(
        self,
        secret_of: SecretLookup,
        on_report: ReportHandler,
        *,
        skew: int = agentauth.DEFAULT_SKEW,
        nonces: agentauth.NonceCache | None = None,
    ) -> None:
        self._secret_of = secret_of
        self._on_report = on_report
        self._skew = skew
        self.nonces = nonces if nonces is not None else agentauth.NonceCache()
        self.active = 0
        self.busy = 0  # connections closed unread because MAX_CONNECTIONS were open
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # connections being served or kept
        self.accepted = 0
        self.connections = 0  # accepted connections (each carries one or more reports)
        self.refused: list[str] = []  # error codes of refused reports, newest last (bounded)
        self._secrets: dict[str, tuple[str, float]] = {}  # host -> (secret, read at)

    def forget(self, host_uuid: str) -> None:
        """Drop the kept secret of a host (it is being deleted or disconnected)."""
        self._secrets.pop(host_uuid, None)

    def _secret(self, host_uuid: str, *, fresh: bool = False) -> str | None:
        now = time.monotonic()
        kept = None if fresh else self._secrets.get(host_uuid)
        if kept is not None and now - kept[1] < SECRET_TTL:
            return kept[0]
        secret = self._secret_of(host_uuid)
        if secret is None:
            self._secrets.pop(host_uuid, None)
        else:
            if len(self._secrets) >= 10_000:
                self._secrets.clear()
            self._secrets[host_uuid] = (secret, now)
        return secret

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self, host: str, port: int) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):  # kept ones too: they would wait KEEP_IDLE
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CONNECTIONS:
            self.busy += 1
            refusals.note("agent report connections over the limit")
            writer.transport.abort()
            return
        self.active += 1
        self.connections += 1
        self._open.add(writer)
        try:
            await self._answer(reader, writer)
        finally:
            self.active -= 1
            self._open.discard(writer)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer reports on this connection until it closes or goes idle."""
        wait = REQUEST_TIMEOUT  # for the first request line; then KEEP_IDLE between reports
        keep = True
        while keep:
            try:
                line = await asyncio.wait_for(reader.readline(), wait)
            except (TimeoutError, ConnectionError, ValueError):  # ValueError: a line too long
                break
            if not line:
                break  # the agent closed it
            wait = KEEP_IDLE
            try:
                status, payload, keep = await asyncio.wait_for(
                    self._request(line, reader), REQUEST_TIMEOUT
                )
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
                status, payload, keep = 400, {"error": {"code": "AGENT.BAD_REQUEST"}}, False
            keep = keep and status == 200  # a refused request's body may be unread
            data = json.dumps(payload).encode()
            reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
            head = (
                f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
            )
            try:
                writer.write(head.encode() + data)
                await writer.drain()
            except (ConnectionError, OSError):
                break
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()
            await writer.wait_closed()

    def _verified(self, host_uuid: str, check: Callable[[str], None]) -> None:
        """Run ``check`` with the host's secret (raises AuthError when it fails)."""
        kept = host_uuid in self._secrets
        secret = self._secret(host_uuid)
        if secret is None:  # same answer as a bad signature: nothing to learn from it
            raise agentauth.AuthError("bad request signature", code="AGENT.AUTH_FORGED")
        try:
            check(secret)
        except agentauth.AuthError as err:
            # the signature is checked before the nonce is recorded, so a kept secret
            # that changed since can be retried with the current one
            if err.code != "AGENT.AUTH_FORGED" or not kept:
                raise
            fresh = self._secret(host_uuid, fresh=True)
            if fresh is None or fresh == secret:
                raise
            check(fresh)

    def _refuse(self, code: str) -> None:
        self.refused.append(code)
        del self.refused[:-100]

    async def _request(
        self, first: bytes, reader: asyncio.StreamReader
    ) -> tuple[int, dict[str, Any], bool]:
        """Read and handle one request whose first line is ``first``; the answer, and
        whether the agent lets the connection carry another."""
        line = first.decode("latin-1").rstrip("\r\n")
        method, _, rest = line.partition(" ")
        target, _, version = rest.rpartition(" ")
        headers: list[tuple[str, str]] = []
        while len(headers) < 100:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        close = version != "HTTP/1.1" or any(
            k.lower() == "connection" and v.lower() == "close" for k, v in headers
        )
        status, payload = await self._handle(method, target, headers, reader)
        return status, payload, not close

    async def _handle(
        self, method: str, target: str, headers: list[tuple[str, str]], reader: asyncio.StreamReader
    ) -> tuple[int, dict[str, Any]]:
        length_text = next((v for k, v in headers if k.lower() == "content-length"), "0")
        if not length_text.isdigit() or int(length_text) > MAX_BODY:
            raise ValueError("bad Content-Length")
        length = int(length_text)
        m = _PATH.match(target)
        if method != "POST" or m is None:
            return 404, {"error": NotFound(f"no such endpoint {method} {target[:100]}").to_wire()}
        host_uuid = m.group(1)
        signed = _Headers(headers)
        try:
            if length > agentauth.PREAUTH_BODY:  # a large body is read only once signed
                self._verified(host_uuid, lambda key: agentauth.verify_head(
                    key, method, target, signed, skew=self._skew))  # fmt: skip
            body = await reader.readexactly(length)
            # off the event loop: a persistent nonce is synced to disk before this returns
            await asyncio.to_thread(self._verified, host_uuid, lambda key: agentauth.verify(
                key, method, target, signed, body, nonces=self.nonces, skew=self._skew))  # fmt: skip
        except agentauth.AuthError as err:
            refusals.note(f"agent reports ({err.code})")  # a summary line, not a line each
            self._refuse(err.code)
            return 401, {"error": err.to_wire()}
        try:
            reports = _reports(json.loads(body), host_uuid)
        except (ValueError, InvalidArgument):
            self._refuse("AGENT.BAD_REPORT")
            return 400, {"error": InvalidArgument("bad report", code="AGENT.BAD_REPORT").to_wire()}
        self.accepted += len(reports)
        for report in reports:
            try:
                await self._on_report(host_uuid, report)
            except ZmnError as err:
                log.warning(
                    "report %s of host %s not handled: %s", report.get("seq"), host_uuid, err
                )
            except Exception:
                log.exception("report %s of host %s not handled", report.get("seq"), host_uuid)
        return 200, {}


class _Headers:
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def items(self) -> list[tuple[str, str]]:
        return self._items


def _reports(body: Any, host_uuid: str) -> list[dict[str, Any]]:
    """The reports a body holds: itself, or a batch's (each an object naming the host, none
    a batch itself); anything else refuses the whole body."""
    if not isinstance(body, dict) or body.get("hostUuid") != host_uuid:
        raise InvalidArgument("report must be an object naming its host")
    if body.get("type") != "batch":
        return [body]
    reports = body.get("reports")
    if not isinstance(reports, list) or not 1 <= len(reports) <= MAX_BATCH:
        raise InvalidArgument(f"a batch holds 1 to {MAX_BATCH} reports")
    for report in reports:
        if not isinstance(report, dict) or report.get("hostUuid") != host_uuid:
            raise InvalidArgument("each report of a batch must be an object naming its host")
        if report.get("type") == "batch":
            raise InvalidArgument("a batch cannot hold a batch")
    return reports
