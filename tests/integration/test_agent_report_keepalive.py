"""An agent's reports reach the node's callback endpoint on one kept-alive connection; one the
node closed meanwhile is replaced without losing a report."""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.error
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.reporter import Reporter
from zmn.api import agentauth
from zmn.services.kvm import callback
from zmn.services.kvm.callback import PATH_PREFIX, CallbackServer

HOST = "c" * 32
SECRET = "s" * 64


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[CallbackServer, list[dict[str, Any]]]]:
    reports: list[dict[str, Any]] = []

    async def on_report(host: str, report: dict[str, Any]) -> None:
        reports.append(report)

    nonces = agentauth.PersistentNonceCache(str(tmp_path / "nonces"))
    server = CallbackServer(lambda h: SECRET if h == HOST else None, on_report, nonces=nonces)
    await server.start("127.0.0.1", 0)
    try:
        yield server, reports
    finally:
        await server.stop()
        nonces.close()


def reporter(server: CallbackServer) -> Reporter:
    url = f"http://127.0.0.1:{server.address[1]}{PATH_PREFIX}{HOST}"
    return Reporter(url, SECRET.encode(), HOST, attempts=1)


def report(seq: int) -> dict[str, Any]:
    return {"type": "vm.lifecycle", "hostUuid": HOST, "seq": seq, "vmUuid": "v" * 32}


async def test_reports_in_a_row_share_one_connection(node: Any) -> None:
    server, reports = node
    rep = reporter(server)
    for seq in (1, 2, 3):
        await asyncio.to_thread(functools.partial(rep.post, report(seq), keep=True))
    assert [r["seq"] for r in reports] == [1, 2, 3]
    assert rep.connections == 1 and server.active == 1  # still open for the next one
    await asyncio.to_thread(rep._disconnect)


async def test_a_connection_the_node_dropped_is_replaced(
    node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, reports = node
    monkeypatch.setattr(callback, "KEEP_IDLE", 0.05)
    rep = reporter(server)
    await asyncio.to_thread(functools.partial(rep.post, report(1), keep=True))
    for _ in range(500):  # the node lets the idle connection go
        if server.active == 0:
            break
        await asyncio.sleep(0.01)
    assert server.active == 0
    await asyncio.to_thread(functools.partial(rep.post, report(2), keep=True))
    assert [r["seq"] for r in reports] == [1, 2] and rep.connections == 2
    await asyncio.to_thread(rep._disconnect)


async def test_a_one_off_post_leaves_no_connection_open(node: Any) -> None:
    server, reports = node
    rep = reporter(server)
    await asyncio.to_thread(rep.post, report(1))
    for _ in range(500):
        if server.active == 0:
            break
        await asyncio.sleep(0.01)
    assert len(reports) == 1 and server.active == 0


async def test_a_refused_report_closes_the_connection(node: Any) -> None:
    server, reports = node
    path = PATH_PREFIX + HOST
    body = json.dumps(report(1)).encode()
    forged = agentauth.sign("f" * 64, "POST", path, body)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address[1])
    head = f"POST {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in forged.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # to EOF: the node closed it
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401") and b"Connection: close" in answer
    assert reports == []


async def test_the_worker_lets_a_quiet_connection_go(node: Any) -> None:
    server, reports = node
    rep = reporter(server)
    rep.keep_idle = 0.05
    rep.start()
    rep.submit("vm.lifecycle", {"vmUuid": "v" * 32})
    for _ in range(500):
        if reports and server.active == 0:
            break
        await asyncio.sleep(0.01)
    assert len(reports) == 1 and server.active == 0 and rep.sent == 1
    await asyncio.to_thread(rep.stop)


async def test_a_burst_of_reports_goes_as_one_post_and_arrives_in_order(
    node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, reports = node
    bodies: list[Any] = []  # what each POST carried, as the node parsed it
    parse = callback._reports
    monkeypatch.setattr(
        callback, "_reports", lambda body, host: bodies.append(body) or parse(body, host)
    )
    rep = reporter(server)
    for _ in range(3):  # queued before the worker starts: one burst whatever the timing
        rep.submit("vm.lifecycle", {"vmUuid": "v" * 32})
    rep.start()
    for _ in range(500):  # the node hands them on before the agent's post returns and counts
        if len(reports) == 3 and rep.sent == 3:
            break
        await asyncio.sleep(0.01)
    assert [r["seq"] for r in reports] == [1, 2, 3] and rep.sent == 3
    assert [b["type"] for b in bodies] == ["batch"] and server.accepted == 3
    await asyncio.to_thread(rep.stop)


@pytest.mark.parametrize(
    "inner",
    [
        [report(1), {**report(2), "hostUuid": "d" * 32}],  # another host's report
        [report(1), {"type": "batch", "hostUuid": HOST, "reports": [report(2)]}],
        [report(1), "not an object"],
        [],
    ],
    ids=["another-host", "nested", "not-object", "empty"],
)
async def test_a_batch_with_a_bad_report_is_refused_whole(node: Any, inner: list[Any]) -> None:
    server, reports = node
    rep = reporter(server)
    batch = {"type": "batch", "hostUuid": HOST, "reports": inner}
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(rep.post, batch)
    assert refused.value.code == 400 and reports == []
