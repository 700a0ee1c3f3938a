"""A flood of refused anonymous calls writes a bounded audit trail and a bounded node log.

Before, every refused login (``IDENTITY.LOGIN_RATE_LIMITED``, ``IDENTITY.LOGIN_BUSY``, a wrong
password) was an audit row of its own: the rate limit kept the argon2 work bounded, but not the
audit table, which a flood from one address grew by a row per request. Now every call refused
to a caller without a principal shares one budget: the first ``ANONYMOUS_ROWS`` of an interval
are rows of their own, the rest one summary row per (peer address, API, error code) holding
the count, and the node log one summary line per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from zmn.api.errors import ZmnError
from zmn.client import AsyncClient
from zmn.core import audit
from zmn.core.node import Node
from zmn.limits import refusals

pytestmark = pytest.mark.usefixtures("cheap_hashes")

LOGINS = 300  # refused logins of the flood (one wrong password, then rate-limited)
CREATES = 100  # mutating calls without a session
PER_CONNECTION = 50


@pytest_asyncio.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    refusals.flush()  # counts of earlier tests of this process
    async with running_node(tmp_path / "home", conf={"api.tcp.listen": "127.0.0.1:0"}) as (
        node,
        _server,
    ):
        api = Api(node)
        await api("CreateAccount", name="alice", password="alice-password")
        for name, value in (("peerBurst", 1), ("peerRatePerMinute", 1)):
            await api(
                "UpdateGlobalConfig", category="identity", name=f"login.{name}", value=str(value)
            )
        yield node


def tcp(node: Node) -> str:
    return next(e for e in node.endpoints if e.startswith("tcp://"))


async def flood(node: Node, api_name: str, args: dict[str, Any], count: int) -> dict[str, int]:
    codes: dict[str, int] = {}
    for start in range(0, count, PER_CONNECTION):
        async with AsyncClient(tcp(node)) as c:
            for _ in range(min(PER_CONNECTION, count - start)):
                try:
                    await c.call(api_name, args)
                except ZmnError as exc:
                    codes[exc.code] = codes.get(exc.code, 0) + 1
    return codes


def mine(record: logging.LogRecord) -> bool:
    """A node log line the flood could have caused (not the host tracker's boot line, which
    the node writes when it is ready, at no fixed time)."""
    return record.name.startswith("zmn") and record.name != "zmn.host.tracker"


async def trail(node: Node) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await Api(node)("QueryAuditLog", conditions=[]))["inventories"]
    return [r for r in rows if r["accountUuid"] is None]


async def test_a_flood_of_refused_logins_leaves_a_bounded_trail(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(audit, "SUMMARY_INTERVAL", 3600.0)  # one interval: the whole flood
    monkeypatch.setattr(refusals, "interval", 3600.0)
    caplog.set_level(logging.INFO, logger="zmn")
    logins = await flood(node, "LogInByAccount", {"accountName": "alice", "password": "no"}, LOGINS)
    assert logins == {"IDENTITY.LOGIN_FAILED": 1, "IDENTITY.LOGIN_RATE_LIMITED": LOGINS - 1}
    creates = await flood(node, "CreateZone", {"name": "z"}, CREATES)
    assert creates == {"IDENTITY.SESSION_REQUIRED": CREATES}

    one_by_one = await trail(node)
    assert len(one_by_one) == audit.ANONYMOUS_ROWS, [r["result"] for r in one_by_one]
    assert [r["result"] for r in one_by_one[:2]] == [
        "IDENTITY.LOGIN_FAILED",
        "IDENTITY.LOGIN_RATE_LIMITED",
    ]
    # the node's own log: nothing per refused request
    per_request = [r for r in caplog.records if mine(r)]
    assert per_request == [], [r.getMessage() for r in per_request]

    audit.flush_refused(node)  # the interval ends (a timer does it: the next test)
    refusals.flush()
    summary = [r for r in await trail(node) if r not in one_by_one]
    counted = {(r["peer"], r["apiName"], r["result"]): r["args"]["refusedCalls"] for r in summary}
    assert counted == {
        ("tcp:127.0.0.1", "LogInByAccount", "IDENTITY.LOGIN_RATE_LIMITED"): LOGINS - 20,
        ("tcp:127.0.0.1", "CreateZone", "IDENTITY.SESSION_REQUIRED"): CREATES,
    }
    lines = [r.getMessage() for r in caplog.records if mine(r)]
    assert len(lines) == 1 and "refused in the last" in lines[0], lines
    assert f"{LOGINS - 20} IDENTITY.LOGIN_RATE_LIMITED" in lines[0]
    assert f"{CREATES} IDENTITY.SESSION_REQUIRED" in lines[0]


async def test_the_summary_is_written_when_its_interval_ends(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Also when the flood has stopped: a timer, not the next refusal, ends the interval."""
    monkeypatch.setattr(audit, "SUMMARY_INTERVAL", 1.0)
    monkeypatch.setattr(refusals, "interval", 1.0)
    caplog.set_level(logging.WARNING, logger="zmn")
    await flood(node, "CreateZone", {"name": "z"}, audit.ANONYMOUS_ROWS + 5)
    deadline = time.monotonic() + 60
    while True:
        rows = await trail(node)
        summary = [r for r in rows if r["args"].get("refusedCalls")]
        lines = [r.getMessage() for r in caplog.records if "refused in the last" in r.getMessage()]
        if summary and lines:
            break
        assert time.monotonic() < deadline, (rows, lines)
        await asyncio.sleep(0.2)
    # at least 5 past the budget (more when the flood spanned two intervals)
    assert sum(r["args"]["refusedCalls"] for r in summary) >= 5
    assert len(rows) - len(summary) + sum(r["args"]["refusedCalls"] for r in summary) == (
        audit.ANONYMOUS_ROWS + 5
    )
