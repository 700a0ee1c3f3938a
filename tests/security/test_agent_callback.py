"""The node's endpoint for agent reports: replays after a node restart (also one after a power
loss), oversized bodies."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.powerloss import PowerLoss
from zmn.api import agentauth
from zmn.services.kvm.callback import PATH_PREFIX, CallbackServer

HOST = "c" * 32
SECRET = "s" * 64


async def post(port: int, path: str, body: bytes, headers: dict[str, str], send: bool = True):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + (body if send else b""))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def endpoint(home: Path, reports: list[dict[str, Any]]) -> CallbackServer:
    async def on_report(host: str, report: dict[str, Any]) -> None:
        reports.append(report)

    nonces = agentauth.PersistentNonceCache(str(home / "agent-report-nonces"))
    return CallbackServer(lambda h: SECRET if h == HOST else None, on_report, nonces=nonces)


async def test_a_report_replayed_after_a_node_restart_is_refused(tmp_path: Path) -> None:
    path = PATH_PREFIX + HOST
    body = json.dumps({"hostUuid": HOST, "type": "vm.lifecycle", "seq": 1}).encode()
    headers = agentauth.sign(SECRET, "POST", path, body)
    reports: list[dict[str, Any]] = []
    first = endpoint(tmp_path, reports)
    await first.start("127.0.0.1", 0)
    assert (await post(first.address[1], path, body, headers)).startswith(b"HTTP/1.1 200")
    await first.stop()
    first.nonces.close()  # type: ignore[attr-defined]
    second = endpoint(tmp_path, reports)  # the node restarted
    await second.start("127.0.0.1", 0)
    try:
        answer = await post(second.address[1], path, body, headers)
        assert answer.startswith(b"HTTP/1.1 401") and b"AGENT.AUTH_REPLAYED" in answer
        assert len(reports) == 1
    finally:
        await second.stop()


async def test_a_report_replayed_after_a_power_loss_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nonce of an accepted report is on disk before the report is handled: a node whose
    machine lost power (its unsynced appends gone) still refuses the replay. Before, nonces
    were appended without a sync, and the replay after the power loss was accepted."""
    power = PowerLoss(monkeypatch)
    path = PATH_PREFIX + HOST
    body = json.dumps({"hostUuid": HOST, "type": "vm.lifecycle", "seq": 2}).encode()
    headers = agentauth.sign(SECRET, "POST", path, body)
    reports: list[dict[str, Any]] = []
    first = endpoint(tmp_path, reports)
    await first.start("127.0.0.1", 0)
    assert (await post(first.address[1], path, body, headers)).startswith(b"HTTP/1.1 200")
    await first.stop()  # the machine lost power: the process is gone, and the page cache
    power.cut(tmp_path / "agent-report-nonces")  # with it
    second = endpoint(tmp_path, reports)
    await second.start("127.0.0.1", 0)
    try:
        answer = await post(second.address[1], path, body, headers)
        assert answer.startswith(b"HTTP/1.1 401") and b"AGENT.AUTH_REPLAYED" in answer
        assert len(reports) == 1
    finally:
        await second.stop()


async def test_a_large_report_is_refused_on_its_headers_before_its_body(tmp_path: Path) -> None:
    path = PATH_PREFIX + HOST
    body = b"x" * (1 << 20)
    server = endpoint(tmp_path, [])
    await server.start("127.0.0.1", 0)
    try:
        forged = agentauth.sign("f" * 64, "POST", path, body)
        started = time.monotonic()
        answer = await post(server.address[1], path, body, forged, send=False)
        assert answer.startswith(b"HTTP/1.1 401") and b"AGENT.AUTH_FORGED" in answer
        assert time.monotonic() - started < 2
    finally:
        await server.stop()
