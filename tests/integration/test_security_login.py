"""Password guessing is bounded and passwords are stored as argon2id hashes.

The limits are the identity service's global configs ``login.maxFailures`` and
``login.lockoutSeconds``: after that many wrong passwords in a row a login is refused, even
with the right password, until the lockout ends; then the next attempts are counted afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from sqlalchemy import text

from tests.support.inproc import Api, running_node
from zmn.api.errors import PermissionDenied
from zmn.client import AsyncClient
from zmn.core.node import Node


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, Api, str]]:
    # Real argon2 parameters: the hashes checked below are the production ones.
    async with running_node(tmp_path / "home", conf={"api.tcp.listen": "127.0.0.1:0"}) as (
        node,
        _server,
    ):
        tcp = next(e for e in node.endpoints if e.startswith("tcp://"))
        yield node, Api(node), tcp


async def attempt(tcp: str, account: str, password: str, user: str | None = None) -> str | None:
    """The error code of a login, or None when it worked."""
    args = {"accountName": account, "password": password}
    api = "LogInByAccount"
    if user is not None:
        args["userName"], api = user, "LogInByUser"
    async with AsyncClient(tcp) as c:
        try:
            await c.call(api, args)
        except PermissionDenied as exc:
            return exc.code
    return None


async def test_lockout_bounds_guessing_and_then_lifts(env: tuple[Node, Api, str]) -> None:
    _node, api, tcp = env
    await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="3")
    await api("UpdateGlobalConfig", category="identity", name="login.lockoutSeconds", value="1")
    await api("CreateAccount", name="alice", password="alice-password")
    await api("CreateAccount", name="bob", password="bob-password")
    for _ in range(3):
        assert await attempt(tcp, "alice", "guess") == "IDENTITY.LOGIN_FAILED"
    # locked: the right password is refused too, with the same answer as a wrong one
    assert await attempt(tcp, "alice", "alice-password") == "IDENTITY.LOGIN_FAILED"
    assert await attempt(tcp, "bob", "bob-password") is None  # other logins unaffected
    await asyncio.sleep(1.1)
    assert await attempt(tcp, "alice", "alice-password") is None
    # a success resets the count: two more failures do not lock
    for _ in range(2):
        assert await attempt(tcp, "alice", "guess") == "IDENTITY.LOGIN_FAILED"
    assert await attempt(tcp, "alice", "alice-password") is None


async def test_users_are_locked_out_separately(env: tuple[Node, Api, str]) -> None:
    _node, api, tcp = env
    await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="2")
    await api("CreateAccount", name="alice", password="alice-password")
    await api("CreateUser", name="al", password="al-password", accountUuid="alice")
    for _ in range(2):
        assert await attempt(tcp, "alice", "guess", user="al") == "IDENTITY.LOGIN_FAILED"
    assert await attempt(tcp, "alice", "al-password", user="al") == "IDENTITY.LOGIN_FAILED"
    assert await attempt(tcp, "alice", "alice-password") is None  # the account still logs in
    # an admin setting a new password lifts the lock
    await api("UpdateUser", uuid="al", password="al-new-password")
    assert await attempt(tcp, "alice", "al-new-password", user="al") is None


async def test_every_stored_password_is_an_argon2id_hash(env: tuple[Node, Api, str]) -> None:
    node, api, _tcp = env
    await api("CreateAccount", name="alice", password="alice-password")
    await api("CreateUser", name="al", password="al-password", accountUuid="alice")
    await api("UpdateAccount", uuid="alice", password="alice-password-2")
    with node.db.tx() as s:
        hashes = s.execute(
            text(
                "SELECT name, passwordHash FROM account WHERE name != 'admin'"
                " UNION ALL SELECT name, passwordHash FROM account_user"
            )
        ).all()
    assert {name for name, _h in hashes} == {"alice", "al"}
    for name, stored in hashes:
        assert stored.startswith("$argon2id$v=19$"), (name, stored)
        assert "password" not in stored
    assert len({h for _n, h in hashes}) == len(hashes)  # salted: no two alike


async def test_a_locked_login_answers_the_same_whatever_the_guess(
    env: tuple[Node, Api, str],
) -> None:
    """While locked, a right guess, a wrong guess and an unknown account look the same."""
    _node, api, tcp = env
    await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="1")
    await api("CreateAccount", name="alice", password="alice-password")
    assert await attempt(tcp, "alice", "guess") == "IDENTITY.LOGIN_FAILED"
    right = await attempt(tcp, "alice", "alice-password")
    wrong = await attempt(tcp, "alice", "guess-again")
    unknown = await attempt(tcp, "nobody", "whatever-pw")
    assert right == wrong == unknown == "IDENTITY.LOGIN_FAILED"
