"""Test helpers for the agent protocol, for this package's tests and the node's.

* :class:`AgentClient` sends signed requests (and, on purpose, unsigned or tampered ones).
* :class:`CallbackReceiver` is a tiny node stand-in: it verifies every report with
  :func:`zmn.api.agentauth.verify` and keeps the good ones and a count of refused ones.
* :func:`running_agent` starts a real :class:`~agent.server.AgentServer` on
  ``127.0.0.1:<free port>`` in a thread, with the fake driver and a recording executor
  unless others are given.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.drivers.base import Driver
from agent.drivers.fake import FakeDriver
from agent.network.executor import Executor, RecordingExecutor
from agent.server import AgentServer
from zmn.api import agentauth

TEST_SECRET = b"0123456789abcdef0123456789abcdef-test-secret"
TEST_HOST_UUID = "a" * 32


class AgentClient:
    """Signed JSON requests to an agent; ``raw`` sends exactly the given headers."""

    def __init__(
        self, base_url: str, secret: bytes, *, context: ssl.SSLContext | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.context = context

    def raw(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(  # noqa: S310 - test helper, http(s) to our own server
            self.base_url + path, data=body or None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def signed_headers(self, method: str, path: str, body: bytes, **sign_kw: Any) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        headers.update(agentauth.sign(self.secret, method, path, body, **sign_kw))
        return headers

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **sign_kw: Any
    ) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else b""
        return self.raw(method, path, data, self.signed_headers(method, path, data, **sign_kw))

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        return self.call("POST", path, body or {})


class CallbackReceiver:
    """An HTTP endpoint that accepts only reports signed with ``secret`` (a batch's are
    listed one by one in ``reports``)."""

    def __init__(self, secret: bytes, path: str = "/agent/v1/report") -> None:
        self.secret = secret
        self.path = path
        self.reports: list[dict[str, Any]] = []
        self.refused: list[tuple[str, str]] = []  # (error code, raw body)
        self._cond = threading.Condition()
        self._nonces = agentauth.NonceCache()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    agentauth.verify(
                        receiver.secret,
                        "POST",
                        self.path,
                        self.headers,
                        body,
                        nonces=receiver._nonces,
                    )
                except agentauth.AuthError as err:
                    with receiver._cond:
                        receiver.refused.append((err.code, body.decode(errors="replace")))
                        receiver._cond.notify_all()
                    self._answer(401, {"error": err.to_wire()})
                    return
                report = json.loads(body)
                with receiver._cond:  # a batch's reports one by one, as the node takes them
                    batch = report.get("type") == "batch"
                    receiver.reports.extend(report["reports"] if batch else [report])
                    receiver._cond.notify_all()
                self._answer(200, {})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first verified report matching ``predicate``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for report in self.reports:
                    if predicate(report):
                        return report
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching report in {timeout} s: {self.reports}")
                self._cond.wait(left)


@contextmanager
def running_agent(
    state_dir: Path,
    *,
    driver: Driver | None = None,
    executor: Executor | None = None,
    secret: bytes = TEST_SECRET,
    clock: Callable[[], float] = time.time,
    **cfg: Any,
) -> Iterator[tuple[AgentServer, AgentClient]]:
    """A real agent on 127.0.0.1:<free port>; stopped (driver closed) on exit."""
    config = AgentConfig.from_mapping(
        {"listen": "127.0.0.1", "port": 0, "state_dir": str(state_dir), "driver": "fake", **cfg}
    )
    server = AgentServer(
        config,
        secret,
        driver or FakeDriver(),
        executor or RecordingExecutor(),
        config.host_uuid or TEST_HOST_UUID,
        clock=clock,
    )
    server.start()
    host, port = server.address
    scheme = "https" if config.tls_cert else "http"
    try:
        yield server, AgentClient(f"{scheme}://{host}:{port}", secret)
    finally:
        server.stop()
