"""Anonymous login floods are limited per peer address and cannot starve a real login.

A login costs an argon2 verification (tens of milliseconds of CPU by design). Before, any
number of anonymous ``LogInByAccount`` calls from one address were all hashed, queued
without bound on the default thread pool. Now a peer gets ``identity/login.peerBurst``
attempts and then ``identity/login.peerRatePerMinute`` (``IDENTITY.LOGIN_RATE_LIMITED``, with
``retryAfter``), at most ``identity/login.parallelism`` logins verify at once, and one peer
may have at most ``identity/login.peerQueue`` logins in progress (``IDENTITY.LOGIN_BUSY``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from zmn.api.errors import Unavailable, ZmnError
from zmn.client import AsyncClient
from zmn.core.globalconfig import GlobalConfigStore
from zmn.services.identity import passwords
from zmn.services.identity.gate import CONFIGS, LoginGate, peer_key


def _gate(**values: int) -> LoginGate:
    store = GlobalConfigStore()
    for d in CONFIGS:
        store.declare(d)
    for name, value in values.items():
        store.set_cached("identity", f"login.{name}", str(value))
    return LoginGate(SimpleNamespace(global_config=store))  # type: ignore[arg-type]


def test_peers_are_keyed_by_address() -> None:
    assert peer_key("tcp:10.1.2.3:40000") == peer_key("tcp:10.1.2.3:40001") == "tcp:10.1.2.3"
    assert peer_key("tls:[::1]:5443") == "tls:[::1]"
    assert peer_key("unix:uid=1000,pid=42") == "unix:uid=1000"
    assert peer_key("") is None and peer_key("api.portal") is None  # in the node, relayed


async def test_a_flood_from_one_address_leaves_room_for_a_login_from_another() -> None:
    gate = _gate(peerBurst=1000, peerRatePerMinute=60, parallelism=1, peerQueue=2)
    verify = 0.05  # what one argon2 verification costs, roughly
    outcomes: dict[str, int] = {}

    async def login(peer: str) -> float:
        started = time.monotonic()
        try:
            async with gate(peer):
                await asyncio.sleep(verify)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except Unavailable as exc:
            outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
        return time.monotonic() - started

    flood = [asyncio.create_task(login(f"tcp:10.9.9.9:{port}")) for port in range(1000, 1500)]
    await asyncio.sleep(0.01)  # the flood is in
    real = await login("tcp:10.1.1.1:5000")
    await asyncio.gather(*flood)

    # the real login waited for at most the flood's own short line, not 500 verifications
    assert real < 5 * verify, real
    assert outcomes["IDENTITY.LOGIN_BUSY"] == 498  # the flood: 2 in progress, the rest refused
    assert outcomes["ok"] == 3
    assert not gate.waiting  # nothing left counted


async def test_the_rate_per_address_refuses_before_any_hashing() -> None:
    gate = _gate(peerBurst=3, peerRatePerMinute=60)
    for _ in range(3):
        async with gate("tcp:10.0.0.7:1"):
            pass
    with pytest.raises(Unavailable) as refused:
        async with gate("tcp:10.0.0.7:2"):
            raise AssertionError("not admitted")
    assert refused.value.code == "IDENTITY.LOGIN_RATE_LIMITED"
    assert 0 < refused.value.details["retryAfter"] <= 1
    async with gate("tcp:10.0.0.8:1"):  # another address has its own bucket
        pass
    await asyncio.sleep(1.05)  # one token back at 60 a minute
    async with gate("tcp:10.0.0.7:3"):
        pass


async def test_logins_over_tcp_are_rate_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_node(tmp_path / "home", conf={"api.tcp.listen": "127.0.0.1:0"}) as (
        node,
        _server,
    ):
        api = Api(node)
        await api("CreateAccount", name="alice", password="alice-password")
        for name, value in (("peerBurst", 3), ("peerRatePerMinute", 1)):
            await api(
                "UpdateGlobalConfig", category="identity", name=f"login.{name}", value=str(value)
            )
        hashed: list[Any] = []
        real_verify = passwords.verify_password

        def counting(stored: str, password: str) -> bool:
            hashed.append(password)
            return real_verify(stored, password)

        monkeypatch.setattr(passwords, "verify_password", counting)
        tcp = next(e for e in node.endpoints if e.startswith("tcp://"))
        codes = []
        for i in range(8):
            async with AsyncClient(tcp) as c:
                try:
                    await c.call("LogInByAccount", {"accountName": "alice", "password": f"no-{i}"})
                except ZmnError as exc:
                    codes.append(exc.code)
        assert codes == ["IDENTITY.LOGIN_FAILED"] * 3 + ["IDENTITY.LOGIN_RATE_LIMITED"] * 5
        assert len(hashed) == 3  # refused attempts cost no argon2 work
        # the unix socket's owner is not limited (a locked-out admin recovers there)
        await api("UpdateAccount", uuid="admin", password="admin-password-2")
        session = await api("LogInByAccount", accountName="admin", password="admin-password-2")
        assert session["inventory"]["uuid"]
