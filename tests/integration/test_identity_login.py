"""Login, sessions, lockout and account management through the real API socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from tests.support.inproc import Api, client_for, running_node
from zmn.api.errors import Conflict, InvalidArgument, PermissionDenied, ZmnError
from zmn.client import AsyncClient
from zmn.core.node import Node
from zmn.server import ApiServer
from zmn.services.config.service import ConfigService
from zmn.services.identity import passwords
from zmn.services.identity.bootstrap import ensure_admin
from zmn.services.identity.models import AccountVO
from zmn.services.identity.service import IdentityService
from zmn.services.identity.sessions import digest
from zmn.services.job.service import JobService
from zmn.services.management.service import ManagementService
from zmn.services.query.service import QueryService
from zmn.services.tag.service import TagService
from zmn.services.zone.service import ZoneService

SERVICES = [
    IdentityService,
    ConfigService,
    TagService,
    JobService,
    QueryService,
    ManagementService,
    ZoneService,
]


def cheap_hasher(time_cost: int = 1) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id, cheap parameters: the defaults cost ~0.5 s a hash on a busy CI box."""
    monkeypatch.setattr(passwords, "_hasher", cheap_hasher())
    monkeypatch.setattr(passwords, "_dummy", [])


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer, Api]]:
    async with running_node(tmp_path / "home", services=SERVICES) as (node, server):
        yield node, server, Api(node)


async def login(server: ApiServer, name: str, password: str, **kw: Any) -> str:
    async with client_for(server) as c:
        reply = await c.call("LogInByAccount", {"accountName": name, "password": password, **kw})
    return str(reply["inventory"]["uuid"])


async def error_of(coro: Any) -> ZmnError:
    with pytest.raises(ZmnError) as err:
        await coro
    return err.value


async def test_login_gives_a_session_for_the_account(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    alice = (await api("CreateAccount", name="alice", password="alice-pass"))["inventory"]
    assert alice["type"] == "Normal" and alice["state"] == "Enabled"
    async with client_for(server) as c:
        reply = await c.call("LogInByAccount", {"accountName": "alice", "password": "alice-pass"})
    inv = reply["inventory"]
    assert inv["accountUuid"] == alice["uuid"] and len(inv["uuid"]) == 32
    assert inv["expiredDate"] > inv["createDate"]
    async with client_for(server, session=inv["uuid"]) as c:
        rows = (await c.call("QueryAccount"))["inventories"]
        assert [r["name"] for r in rows] == ["alice"]  # a normal account sees only itself
        err = await error_of(c.call("CreateZone", {"name": "z1"}))
        assert isinstance(err, PermissionDenied) and err.code == "IDENTITY.ADMIN_ONLY"
        err = await error_of(c.call("QuerySession"))
        assert err.code == "IDENTITY.ADMIN_ONLY"
        err = await error_of(c.call("CreateAccount", {"name": "eve", "password": "eve-password"}))
        assert err.code == "IDENTITY.ADMIN_ONLY"
    sessions = (await api("QuerySession", conditions=[f"accountUuid={alice['uuid']}"]))[
        "inventories"
    ]
    # the table keys the session by the token's digest: it holds no usable token
    assert [s["uuid"] for s in sessions] == [digest(inv["uuid"])] != [inv["uuid"]]


async def test_password_hash_never_leaves_the_node(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")
    for inv in (await api("QueryAccount"))["inventories"]:
        assert "passwordHash" not in inv
    err = await error_of(api("QueryAccount", conditions=["passwordHash~=argon2"]))
    assert err.code == "QUERY.UNKNOWN_FIELD"
    catalogue = (await api("GetApiCatalogue"))["catalogue"]
    account = next(r for r in catalogue["resources"] if r["name"] == "Account")
    assert "passwordHash" not in [f["name"] for f in account["fields"]]
    create = next(a for a in catalogue["apis"] if a["name"] == "CreateAccount")
    assert next(p for p in create["params"] if p["name"] == "password")["secret"] is True
    login_api = next(a for a in catalogue["apis"] if a["name"] == "LogInByAccount")
    assert login_api["public"] is True


async def test_bad_password_and_unknown_account_look_the_same(
    env: tuple[Node, ApiServer, Api],
) -> None:
    _node, server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")
    wrong = await error_of(login(server, "alice", "not-her-password"))
    unknown = await error_of(login(server, "nobody", "not-her-password"))
    assert isinstance(wrong, PermissionDenied)
    assert wrong.to_wire() == unknown.to_wire()
    assert wrong.code == "IDENTITY.LOGIN_FAILED"


async def test_lockout_after_repeated_failures(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="3")
    await api("UpdateGlobalConfig", category="identity", name="login.lockoutSeconds", value=1)
    await api("CreateAccount", name="alice", password="alice-pass")
    for _ in range(3):
        await error_of(login(server, "alice", "guess"))
    row = (await api("QueryAccount", conditions=["name=alice"]))["inventories"][0]
    assert row["lockedUntil"] is not None
    locked = await error_of(login(server, "alice", "alice-pass"))  # right password, still locked
    assert locked.code == "IDENTITY.LOGIN_FAILED"
    await asyncio.sleep(1.1)
    assert await login(server, "alice", "alice-pass")
    row = (await api("QueryAccount", conditions=["name=alice"]))["inventories"][0]
    assert row["failedLogins"] == 0 and row["lockedUntil"] is None


async def test_admin_password_reset_lifts_a_lockout(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="2")
    await api("CreateAccount", name="alice", password="alice-pass")
    for _ in range(2):
        await error_of(login(server, "alice", "guess"))
    await api("UpdateAccount", uuid="alice", password="fresh-password")
    assert await login(server, "alice", "fresh-password")


async def test_logout_ends_the_session(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")
    session = await login(server, "alice", "alice-pass")
    async with client_for(server, session=session) as c:
        assert (await c.call("QueryZone"))["inventories"] == []
        assert (await c.call("ValidateSession", {"sessionUuid": session}))["valid"] is True
        assert await c.call("LogOut", {"sessionUuid": session}) == {}
        err = await error_of(c.call("QueryZone"))
        assert isinstance(err, PermissionDenied) and err.code == "IDENTITY.SESSION_INVALID"
        assert await c.call("LogOut", {"sessionUuid": session}) == {}  # idempotent
        check = await c.call("ValidateSession", {"sessionUuid": session})
        assert check == {"valid": False, "code": "IDENTITY.SESSION_INVALID"}


async def test_session_expires_after_the_configured_idle_time(
    env: tuple[Node, ApiServer, Api],
) -> None:
    _node, server, api = env
    await api("UpdateGlobalConfig", category="identity", name="session.timeout", value="1")
    await api("CreateAccount", name="alice", password="alice-pass")
    session = await login(server, "alice", "alice-pass")
    async with client_for(server, session=session) as c:
        await c.call("QueryZone")
        await asyncio.sleep(1.3)
        err = await error_of(c.call("QueryZone"))
        assert isinstance(err, PermissionDenied) and err.code == "IDENTITY.SESSION_EXPIRED"
        err = await error_of(c.call("QueryZone"))  # using it again does not revive it
        assert err.code == "IDENTITY.SESSION_EXPIRED"
        check = await c.call("ValidateSession", {"sessionUuid": session})
        assert check == {"valid": False, "code": "IDENTITY.SESSION_EXPIRED"}


async def test_use_refreshes_the_session(env: tuple[Node, ApiServer, Api]) -> None:
    node, server, api = env
    await api("UpdateGlobalConfig", category="identity", name="session.timeout", value="1")
    await api("CreateAccount", name="alice", password="alice-pass")
    session = await login(server, "alice", "alice-pass")
    async with client_for(server, session=session) as c:
        for _ in range(6):  # 2.1 s in all, well past the 1 s timeout
            await asyncio.sleep(0.35)
            await c.call("QueryZone")
        node.authenticator.sessions.cache.clear()  # type: ignore[union-attr]
        await c.call("QueryZone")  # the refreshed expiry reached the database too


async def test_max_concurrent_sessions(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    await api("UpdateGlobalConfig", category="identity", name="session.maxConcurrent", value="1")
    await api("CreateAccount", name="alice", password="alice-pass")
    first = await login(server, "alice", "alice-pass")
    err = await error_of(login(server, "alice", "alice-pass"))
    assert err.code == "IDENTITY.TOO_MANY_SESSIONS"
    async with client_for(server) as c:
        await c.call("LogOut", {"sessionUuid": first})
    assert await login(server, "alice", "alice-pass")


async def test_password_change_by_the_account_ends_its_other_sessions(
    env: tuple[Node, ApiServer, Api],
) -> None:
    _node, server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")
    await api("CreateAccount", name="bob", password="bob-password")
    mine, other = (
        await login(server, "alice", "alice-pass"),
        await login(server, "alice", "alice-pass"),
    )
    async with client_for(server, session=mine) as c:
        err = await error_of(c.call("UpdateAccount", {"uuid": "bob", "password": "hijacked-pw"}))
        assert err.code == "ACCOUNT.NOT_FOUND"  # other accounts are invisible
        # one's own password: the current one is needed (a stolen session cannot take over)
        err = await error_of(c.call("UpdateAccount", {"uuid": "alice", "password": "new-pass-1"}))
        assert err.code == "IDENTITY.CURRENT_PASSWORD_REQUIRED" and err.field == "currentPassword"
        err = await error_of(
            c.call(
                "UpdateAccount",
                {"uuid": "alice", "password": "new-pass-1", "currentPassword": "not-alices"},
            )
        )
        assert err.code == "IDENTITY.LOGIN_FAILED" and err.field == "currentPassword"
        err = await error_of(
            c.call(
                "UpdateAccount",
                {"uuid": "alice", "password": "short", "currentPassword": "alice-pass"},
            )
        )
        assert isinstance(err, InvalidArgument) and err.code == "IDENTITY.WEAK_PASSWORD"
        await c.call(
            "UpdateAccount",
            {"uuid": "alice", "password": "new-alice-pass", "currentPassword": "alice-pass"},
        )
        await c.call("QueryZone")  # the session that changed it stays
    async with client_for(server, session=other) as c:
        err = await error_of(c.call("QueryZone"))
        assert err.code == "IDENTITY.SESSION_INVALID"
    await error_of(login(server, "alice", "alice-pass"))
    assert await login(server, "alice", "new-alice-pass")


async def test_users_log_in_and_act_as_their_account(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    alice = (await api("CreateAccount", name="alice", password="alice-pass"))["inventory"]
    await api("CreateAccount", name="bob", password="bob-password")
    await api("CreateUser", name="ops", password="bob-ops-pass", accountUuid="bob")
    session = await login(server, "alice", "alice-pass")
    async with client_for(server, session=session) as c:
        user = (await c.call("CreateUser", {"name": "ops", "password": "ops-password"}))[
            "inventory"
        ]
        assert user["accountUuid"] == alice["uuid"] and "passwordHash" not in user
        users = (await c.call("QueryUser"))["inventories"]
        assert [u["uuid"] for u in users] == [user["uuid"]]  # not bob's ops
        err = await error_of(c.call("CreateUser", {"name": "ops", "password": "ops-password"}))
        assert isinstance(err, Conflict) and err.code == "USER.DUPLICATE_NAME"
        reply = await c.call(
            "LogInByUser", {"accountName": "alice", "userName": "ops", "password": "ops-password"}
        )
    user_session = reply["inventory"]["uuid"]
    assert reply["inventory"]["userUuid"] == user["uuid"]
    async with client_for(server, session=user_session) as c:
        assert [a["name"] for a in (await c.call("QueryAccount"))["inventories"]] == ["alice"]
        err = await error_of(c.call("UpdateAccount", {"uuid": "alice", "password": "taken-over"}))
        assert err.code == "IDENTITY.PERMISSION_DENIED"  # a user cannot manage its account
        err = await error_of(
            c.call("UpdateUser", {"uuid": user["uuid"], "password": "ops-password-2"})
        )
        assert err.code == "IDENTITY.CURRENT_PASSWORD_REQUIRED"
        await c.call(
            "UpdateUser",
            {"uuid": user["uuid"], "password": "ops-password-2", "currentPassword": "ops-password"},
        )
    wrong = await error_of(
        api("LogInByUser", accountName="alice", userName="ops", password="ops-password")
    )
    assert wrong.code == "IDENTITY.LOGIN_FAILED"
    await api("LogInByUser", accountName="alice", userName="ops", password="ops-password-2")
    await api("DeleteUser", uuid=user["uuid"])
    async with client_for(server, session=user_session) as c:
        err = await error_of(c.call("QueryZone"))
        assert err.code == "IDENTITY.SESSION_INVALID"


async def test_disabling_an_account_ends_its_sessions(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")
    session = await login(server, "alice", "alice-pass")
    await api("ChangeAccountState", uuid="alice", stateEvent="disable")
    async with client_for(server, session=session) as c:
        err = await error_of(c.call("QueryZone"))
        assert err.code == "IDENTITY.SESSION_INVALID"
    err = await error_of(login(server, "alice", "alice-pass"))
    assert err.code == "IDENTITY.ACCOUNT_DISABLED"
    await api("ChangeAccountState", uuid="alice", stateEvent="enable")
    assert await login(server, "alice", "alice-pass")


async def test_the_admin_account_is_protected(env: tuple[Node, ApiServer, Api]) -> None:
    node, server, api = env
    admin = node.admin_principal()
    rows = (await api("QueryAccount", conditions=["name=admin"]))["inventories"]
    assert [r["uuid"] for r in rows] == [admin.accountUuid]
    assert rows[0]["type"] == "SystemAdmin"
    for call in (
        api("DeleteAccount", uuid="admin"),
        api("ChangeAccountState", uuid="admin", stateEvent="disable"),
        api("UpdateAccount", uuid="admin", name="root"),
    ):
        assert (await error_of(call)).code == "IDENTITY.ADMIN_PROTECTED"
    # started without `zmn init`: the admin has no usable password yet
    assert (await error_of(login(server, "admin", ""))).code == "IDENTITY.LOGIN_FAILED"


async def test_delete_account_with_users_needs_cascade(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")
    await api("CreateUser", name="ops", password="ops-password", accountUuid="alice")
    session = await login(server, "alice", "alice-pass")
    err = await error_of(api("DeleteAccount", uuid="alice"))
    assert isinstance(err, Conflict) and err.code == "ACCOUNT.HAS_DEPENDENTS"
    await api("DeleteAccount", uuid="alice", cascade=True)
    assert (await api("QueryAccount", conditions=["name=alice"]))["inventories"] == []
    assert (await api("QueryUser", count=True))["total"] == 0
    assert (await api("QuerySession", count=True))["total"] == 0
    async with client_for(server, session=session) as c:
        assert (await error_of(c.call("QueryZone"))).code == "IDENTITY.SESSION_INVALID"


async def test_create_account_is_idempotent_and_names_are_unique(
    env: tuple[Node, ApiServer, Api],
) -> None:
    _node, _server, api = env
    uuid = "1" * 32
    first = await api("CreateAccount", name="alice", password="alice-pass", resourceUuid=uuid)
    again = await api("CreateAccount", name="alice", password="alice-pass", resourceUuid=uuid)
    assert first == again
    err = await error_of(api("CreateAccount", name="alice", password="alice-pass"))
    assert err.code == "ACCOUNT.DUPLICATE_NAME"
    err = await error_of(api("CreateAccount", name="weak", password="short"))
    assert err.code == "IDENTITY.WEAK_PASSWORD"


async def test_tcp_always_needs_a_session(tmp_path: Path) -> None:
    conf = {"api.tcp.listen": "127.0.0.1:0"}
    async with running_node(tmp_path / "home", services=SERVICES, conf=conf) as (node, _server):
        created, password = ensure_admin(node.db)  # what `zmn init` does
        assert created and password
        tcp = next(e for e in node.endpoints if e.startswith("tcp://"))
        async with AsyncClient(tcp) as c:
            assert c.hello["auth"] == "session"
            assert (await c.call("Ping"))["pong"] is True  # public
            err = await error_of(c.call("QueryZone"))
            assert isinstance(err, PermissionDenied) and err.code == "IDENTITY.SESSION_REQUIRED"
            err = await error_of(c.call("CreateZone", {"name": "z1"}))
            assert err.code == "IDENTITY.SESSION_REQUIRED"
            reply = await c.call("LogInByAccount", {"accountName": "admin", "password": password})
        async with AsyncClient(tcp, reply["inventory"]["uuid"]) as c:
            zone = (await c.call("CreateZone", {"name": "z1"}))["inventory"]
            assert (await c.call("QueryZone"))["inventories"][0]["uuid"] == zone["uuid"]
        async with AsyncClient(tcp, "0" * 32) as c:
            err = await error_of(c.call("QueryZone"))
            assert err.code == "IDENTITY.SESSION_INVALID"


async def test_login_upgrades_hashes_made_with_older_parameters(
    env: tuple[Node, ApiServer, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    node, server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")

    def stored() -> str:
        with node.db.tx() as s:
            return str(s.scalar(select(AccountVO.passwordHash).where(AccountVO.name == "alice")))

    before = stored()
    assert before.startswith("$argon2id$") and "t=1," in before
    monkeypatch.setattr(passwords, "_hasher", cheap_hasher(time_cost=2))
    assert await login(server, "alice", "alice-pass")
    after = stored()
    assert after != before and "t=2," in after
    assert await login(server, "alice", "alice-pass")
