"""Every API refuses a caller without a valid session before any handler runs.

The API list is the node's own (every entry-point service loaded), so a new API is covered
the day it is added. For each API and each kind of bad session (none on TCP, expired, forged,
malformed, logged out) the call must fail with PermissionDenied (``IDENTITY.*``), the API must
never reach routing (where a handler or job would start), no table may gain or lose a row,
and a mutating API leaves exactly one audit row saying it was refused. Internal APIs answer
"no such API" to every client. Admin-only APIs refuse a normal account the same way.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, literal, select, text, union_all, update

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import build_cloud
from zmn.api.errors import NotFound, PermissionDenied, ZmnError
from zmn.api.message import ApiSpec
from zmn.client import AsyncClient
from zmn.core.config import BootConfig
from zmn.core.db import Base, utcnow
from zmn.core.node import Node
from zmn.limits import refusals
from zmn.services.identity.bootstrap import ensure_admin
from zmn.services.identity.models import SessionVO
from zmn.services.identity.sessions import digest

in_module_loop = pytest.mark.asyncio(loop_scope="module")


def catalogue_specs() -> dict[str, ApiSpec]:
    """Every API the installed services offer (read at collection time, nothing started)."""
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(BootConfig.load(Path(tmp), env={}))
        try:
            node.load_services()
            assert not node.plugin_errors, node.plugin_errors
            return {name: cls.__api__ for name, cls in node.apis.apis.items()}
        finally:
            node.db.dispose()


SPECS = catalogue_specs()
GUARDED = sorted(name for name, spec in SPECS.items() if not spec.public)
ADMIN_ONLY = sorted(name for name, spec in SPECS.items() if spec.admin and not spec.internal)
PUBLIC = {"Ping", "GetApiCatalogue", "LogInByAccount", "LogInByUser", "LogOut", "ValidateSession"}
EXPECTED = {
    "missing": "IDENTITY.SESSION_REQUIRED",
    "expired": "IDENTITY.SESSION_EXPIRED",
    "forged": "IDENTITY.SESSION_INVALID",
    "malformed": "IDENTITY.SESSION_INVALID",
    "logged-out": "IDENTITY.SESSION_INVALID",
}


@dataclass
class World:
    node: Node
    clients: dict[str, AsyncClient]
    routed: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)


async def login(tcp: str, account: str, password: str) -> str:
    async with AsyncClient(tcp) as c:
        reply = await c.call("LogInByAccount", {"accountName": account, "password": password})
    return str(reply["inventory"]["uuid"])


# the module's clients with bad sessions live for the whole module: no auth timeout
CONF = {"api.tcp.listen": "127.0.0.1:0", "api.timeout.auth": "0"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory, cheap_hashes_module: Any
) -> AsyncIterator[World]:
    home = tmp_path_factory.mktemp("security-sessions") / "home"
    async with running_node(home, conf=CONF) as (node, _server):
        api = Api(node)
        await build_cloud(api)  # rows in most tables, so a stray write would show
        ensure_admin(node.db, "admin-password")
        await api("CreateAccount", name="bob", password="bob-password")
        tcp = next(e for e in node.endpoints if e.startswith("tcp://"))
        expired = await login(tcp, "admin", "admin-password")
        with node.db.tx() as s:
            s.execute(
                update(SessionVO)
                .where(SessionVO.uuid == digest(expired))
                .values(expiredDate=utcnow() - dt.timedelta(minutes=1))
            )
        node.services["identity"].sessions.forget([digest(expired)])  # type: ignore[attr-defined]
        logged_out = await login(tcp, "admin", "admin-password")
        async with AsyncClient(tcp, logged_out) as c:
            await c.call("LogOut", {"sessionUuid": logged_out})
        sessions: dict[str, str | None] = {
            "missing": None,
            "expired": expired,
            "forged": "0123456789abcdef0123456789abcdef",
            "malformed": "' OR '1'='1'; --" + "\u00e9" * 80,
            "logged-out": logged_out,
            "normal": await login(tcp, "bob", "bob-password"),
        }
        clients = {mode: await AsyncClient(tcp, sess).connect() for mode, sess in sessions.items()}
        w = World(node, clients)
        route, submit = node.route, node.jobs.submit

        def spy_route(name: str) -> str:
            w.routed.append(name)
            return route(name)

        def spy_submit(name: str, *args: Any, **kw: Any) -> Any:
            w.submitted.append(name)
            return submit(name, *args, **kw)

        node.route = spy_route  # type: ignore[method-assign]
        node.jobs.submit = spy_submit  # type: ignore[method-assign]
        try:
            yield w
        finally:
            for client in clients.values():
                await client.close()


def row_counts(node: Node) -> dict[str, int]:
    """Rows per table, every table of every service but the audit trail (it should grow)."""
    tables = [t for t in Base.metadata.sorted_tables if t.name != "audit_log"]
    counts = union_all(*(select(literal(t.name), func.count()).select_from(t) for t in tables))
    with node.db.tx() as s:
        return {name: int(n) for name, n in s.execute(counts)}


def audit_since(node: Node, last: int) -> list[tuple[str, str, str | None]]:
    with node.db.tx() as s:
        rows = s.execute(
            text("SELECT apiName, result, accountUuid FROM audit_log WHERE id > :last"),
            {"last": last},
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def last_audit_id(node: Node) -> int:
    with node.db.tx() as s:
        return int(s.scalar(text("SELECT COALESCE(MAX(id), 0) FROM audit_log")) or 0)


async def refused(world: World, mode: str, api_name: str) -> tuple[ZmnError, list[Any]]:
    """Call ``api_name`` with no arguments as ``mode``; check nothing ran or changed."""
    before, last = row_counts(world.node), last_audit_id(world.node)
    world.routed.clear()
    world.submitted.clear()
    with pytest.raises(ZmnError) as err:
        await world.clients[mode].call(api_name, {})
    assert api_name not in world.routed, f"{api_name} reached routing as {mode}"
    assert world.submitted == []
    assert row_counts(world.node) == before
    return err.value, audit_since(world.node, last)


def test_public_apis_are_the_known_few() -> None:
    """A new public API must be a deliberate decision: add it here after review."""
    assert {name for name, spec in SPECS.items() if spec.public} == PUBLIC


@in_module_loop
@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("api_name", GUARDED)
async def test_api_refuses_a_bad_session_before_any_handler(
    world: World, api_name: str, mode: str
) -> None:
    spec = SPECS[api_name]
    counted = f"{EXPECTED[mode]} not audited one by one"
    summarized = refusals.totals[counted]
    err, audit = await refused(world, mode, api_name)
    if spec.internal:
        assert isinstance(err, NotFound) and err.code == "API.NOT_FOUND"
        assert audit == []
        return
    assert isinstance(err, PermissionDenied), err
    assert err.code == EXPECTED[mode]
    if spec.mutating and audit == []:  # past the audit's budget for session refusals
        assert refusals.totals[counted] > summarized
    elif spec.mutating:
        assert audit == [(api_name, EXPECTED[mode], None)]
    else:
        assert audit == []


@in_module_loop
@pytest.mark.parametrize("api_name", ADMIN_ONLY)
async def test_admin_api_refuses_a_normal_account_before_any_handler(
    world: World, api_name: str
) -> None:
    err, audit = await refused(world, "normal", api_name)
    assert isinstance(err, PermissionDenied) and err.code == "IDENTITY.ADMIN_ONLY"
    if SPECS[api_name].mutating:
        assert [(a, r) for a, r, _who in audit] == [(api_name, "IDENTITY.ADMIN_ONLY")]
        assert audit[0][2] is not None  # the account is known, and recorded


@in_module_loop
async def test_the_bad_sessions_stay_bad(world: World) -> None:
    """Being refused does not refresh an expired session or revive a logged-out one."""
    for mode in ("expired", "logged-out"):
        session = world.clients[mode].session
        assert session is not None
        reply = await world.clients["missing"].call("ValidateSession", {"sessionUuid": session})
        assert reply["valid"] is False and reply["code"] == EXPECTED[mode]
