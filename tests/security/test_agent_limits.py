"""zagent's HTTP endpoint under replay, oversized bodies and connection floods."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from agent.testing import TEST_SECRET, running_agent
from tests.support.powerloss import PowerLoss
from zmn.api import agentauth


def test_a_replayed_request_after_an_agent_restart_is_refused(tmp_path: Path) -> None:
    path = "/v1/ping?echo=once"
    with running_agent(tmp_path) as (_server, client):
        headers = client.signed_headers("GET", path, b"")
        assert client.raw("GET", path, b"", headers)[0] == 200
    # a restart (all in-memory state gone) inside the request's timestamp window
    with running_agent(tmp_path) as (_server, client):
        status, body = client.raw("GET", path, b"", headers)
        assert status == 401 and body["error"]["code"] == "AGENT.AUTH_REPLAYED"
        assert client.get(path)[0] == 200  # a fresh signature still works


def test_a_replayed_request_after_an_agent_power_loss_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the machine lost power: only what was synced survives (the nonce of an
    accepted request is synced before the request runs)."""
    power = PowerLoss(monkeypatch)
    path = "/v1/ping?echo=power"
    with running_agent(tmp_path) as (_server, client):
        headers = client.signed_headers("GET", path, b"")
        assert client.raw("GET", path, b"", headers)[0] == 200
        assert power.cut(tmp_path / "nonces") == 0  # nothing of it was left unsynced
    with running_agent(tmp_path) as (_server, client):
        status, body = client.raw("GET", path, b"", headers)
        assert status == 401 and body["error"]["code"] == "AGENT.AUTH_REPLAYED"


def _http(port: int, head: str, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_a_large_body_is_refused_on_its_signed_headers_before_it_is_read(
    tmp_path: Path,
) -> None:
    with running_agent(tmp_path) as (server, _client):
        port = server.address[1]
        forged = agentauth.sign("f" * 64, "POST", "/v1/vm/start", b"x" * (1 << 20))
        head = "POST /v1/vm/start HTTP/1.1\r\nContent-Length: 1048576\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in forged.items()) + "\r\n"
        started = time.monotonic()
        answer = _http(port, head)  # sends none of the megabyte it announced
        assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
        assert b"AGENT.AUTH_FORGED" in answer
        assert time.monotonic() - started < 2
        # signed by the secret, the same size goes through the normal checks
        good = agentauth.sign(TEST_SECRET, "POST", "/v1/nothing", b"x" * (1 << 20))
        head = "POST /v1/nothing HTTP/1.1\r\nContent-Length: 1048576\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in good.items()) + "\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head.encode() + b"x" * (1 << 20))
            assert s.recv(65536).startswith(b"HTTP/1.1 404")


def test_idle_connections_cannot_take_all_threads(tmp_path: Path) -> None:
    with running_agent(tmp_path, max_connections=4, header_timeout=1) as (server, client):
        port = server.address[1]
        threads_before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        idle[0].sendall(b"GET /v1/pi")  # half a request line, then nothing (slowloris)
        try:
            time.sleep(0.3)
            extra = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(20)]
            for s in extra:  # closed at once, no thread started for them
                assert s.recv(1) == b""
                s.close()
            assert threading.active_count() <= threads_before + 4
            assert server.httpd.refused >= 20
            time.sleep(1.5)  # header_timeout reaps the idle ones
            started = time.monotonic()
            assert client.get("/v1/ping")[0] == 200
            assert time.monotonic() - started < 0.5
        finally:
            for s in idle:
                s.close()
