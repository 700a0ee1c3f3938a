"""The audit trail: every mutating API call is one row (who, what, when, result), secrets are
never stored, rows are never changed, and a normal account reads only its own rows."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from tests.support.inproc import Api, client_for, running_node
from zmn.api.errors import ZmnError
from zmn.client import AsyncClient
from zmn.core.audit import ApiCallObserver, ApiCallRecord
from zmn.core.node import Node
from zmn.server import ApiServer

pytestmark = pytest.mark.usefixtures("cheap_hashes")


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer, Api]]:
    conf = {"api.tcp.listen": "127.0.0.1:0"}
    async with running_node(tmp_path / "home", conf=conf) as (node, server):
        yield node, server, Api(node)


def tcp(node: Node) -> str:
    return next(e for e in node.endpoints if e.startswith("tcp://"))


async def error_of(coro: Any) -> ZmnError:
    with pytest.raises(ZmnError) as err:
        await coro
    return err.value


async def session_for(node: Node, api: Api, name: str) -> str:
    await api("CreateAccount", name=name, password=f"{name}-password")
    async with AsyncClient(tcp(node)) as c:
        reply = await c.call(
            "LogInByAccount", {"accountName": name, "password": f"{name}-password"}
        )
    return str(reply["inventory"]["uuid"])


async def trail(api: Api, *conditions: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await api("QueryAuditLog", conditions=list(conditions)))[
        "inventories"
    ]
    return rows


def raw_table(node: Node) -> str:
    """Every byte of the audit table, to look for secrets the API might hide."""
    with node.db.tx() as s:
        rows = s.execute(text("SELECT * FROM audit_log")).all()
    return "\n".join(repr(tuple(r)) for r in rows)


async def test_a_mutating_call_is_recorded_with_who_what_when_and_result(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, server, api = env
    async with client_for(server) as c:
        zone = (await c.call("CreateZone", {"name": "z1", "description": "first"}))["inventory"]
        err = await error_of(c.call("CreateZone", {"name": "z1"}))
        await c.call("QueryZone")  # read-only: not audited
        await c.call("UpdateZone", {"uuid": "z1", "description": "renamed"})
    rows = await trail(api)
    assert [(r["apiName"], r["result"]) for r in rows] == [
        ("CreateZone", "ok"),
        ("CreateZone", err.code),
        ("UpdateZone", "ok"),
    ]
    first = rows[0]
    admin = node.admin_principal()
    assert first["accountUuid"] == admin.accountUuid and first["accountName"] == "admin"
    assert first["peer"].startswith("unix:uid=") and ",pid=" in first["peer"]
    assert first["resourceType"] == "Zone" and first["resourceUuid"] == zone["uuid"]
    assert first["args"]["name"] == "z1" and first["args"]["description"] == "first"
    assert first["durationMs"] >= 0 and first["createDate"] <= rows[1]["createDate"]
    assert first["managementNodeUuid"] == node.uuid
    # names given for references are stored resolved: the trail names the exact resource
    assert rows[2]["args"]["uuid"] == zone["uuid"] == rows[2]["resourceUuid"]
    assert rows[0]["id"] < rows[1]["id"] < rows[2]["id"]


async def test_secrets_and_sessions_never_reach_the_table(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, _server, api = env
    await api("CreateAccount", name="alice", password="s3cret-alice-pw")
    async with AsyncClient(tcp(node)) as c:
        await error_of(c.call("LogInByAccount", {"accountName": "alice", "password": "wr0ng-pw"}))
        reply = await c.call(
            "LogInByAccount", {"accountName": "alice", "password": "s3cret-alice-pw"}
        )
    session = reply["inventory"]["uuid"]
    async with AsyncClient(tcp(node), session) as c:
        await c.call(
            "UpdateAccount",
            {
                "uuid": "alice",
                "password": "n3w-alice-password",
                "currentPassword": "s3cret-alice-pw",
            },
        )
        await c.call("LogOut", {"sessionUuid": session})
    rows = await trail(api)
    assert [(r["apiName"], r["result"]) for r in rows] == [
        ("CreateAccount", "ok"),
        ("LogInByAccount", "IDENTITY.LOGIN_FAILED"),
        ("LogInByAccount", "ok"),
        ("UpdateAccount", "ok"),
        ("LogOut", "ok"),
    ]
    assert rows[0]["args"]["password"] == "*****"
    assert rows[1]["args"] == {"accountName": "alice", "password": "*****"}
    assert rows[1]["accountUuid"] is None and rows[1]["peer"].startswith("tcp:127.0.0.1:")
    update = rows[3]
    assert update["accountName"] == "alice" and update["args"]["password"] == "*****"
    assert update["sessionId"] == hashlib.sha256(session.encode()).hexdigest()[:16]
    assert rows[4]["args"]["sessionUuid"] == "*****"
    everything = raw_table(node)
    for secret in ("s3cret-alice-pw", "wr0ng-pw", "n3w-alice-password", session):
        assert secret not in everything


async def test_refused_calls_are_recorded_with_argument_names_only(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, server, api = env
    async with AsyncClient(tcp(node)) as c:
        err = await error_of(c.call("CreateZone", {"name": "z1", "pasword": "typo-secret"}))
        assert err.code == "IDENTITY.SESSION_REQUIRED"
    async with AsyncClient(tcp(node), "f" * 32) as c:
        err = await error_of(c.call("DeleteZone", {"uuid": "z1"}))
        assert err.code == "IDENTITY.SESSION_INVALID"
    async with client_for(server) as c:
        err = await error_of(c.call("CreateZone", {"name": "z2", "pasword": "typo-secret"}))
        assert err.code == "ARG.UNKNOWN"
    rows = await trail(api)
    assert [(r["apiName"], r["result"]) for r in rows] == [
        ("CreateZone", "IDENTITY.SESSION_REQUIRED"),
        ("DeleteZone", "IDENTITY.SESSION_INVALID"),
        ("CreateZone", "ARG.UNKNOWN"),
    ]
    assert rows[0]["args"] == {"name": "*****", "pasword": "*****"}
    assert rows[0]["accountUuid"] is None and rows[0]["peer"].startswith("tcp:")
    assert rows[1]["sessionId"] is None  # a forged session is not a session
    assert rows[2]["accountName"] == "admin" and rows[2]["args"]["pasword"] == "*****"
    assert "typo-secret" not in raw_table(node)


async def test_normal_accounts_read_only_their_own_rows(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, _server, api = env
    alice, bob = await session_for(node, api, "alice"), await session_for(node, api, "bob")
    async with AsyncClient(tcp(node), alice) as a, AsyncClient(tcp(node), bob) as b:
        await a.call(
            "CreateUserTag", {"resourceType": "Account", "resourceUuid": "alice", "tag": "x"}
        )
        await a.call("CreateUser", {"name": "al", "password": "al-password"})
        await b.call("UpdateAccount", {"uuid": "bob", "description": "bob was here"})
        mine = (await a.call("QueryAuditLog"))["inventories"]
        assert {r["apiName"] for r in mine} == {"CreateUserTag", "CreateUser"}
        assert {r["accountName"] for r in mine} == {"alice"}
        theirs = (await b.call("QueryAuditLog"))["inventories"]
        assert [r["apiName"] for r in theirs] == ["UpdateAccount"]
        # naming another account's rows in a condition does not reveal them
        found = await b.call("QueryAuditLog", {"conditions": ["accountName=alice"]})
        assert found["inventories"] == []
        assert (await b.call("QueryAuditLog", {"count": True}))["total"] == 1
        async with AsyncClient(tcp(node)) as anon:
            reply = await anon.call(
                "LogInByUser", {"accountName": "alice", "userName": "al", "password": "al-password"}
            )
        async with AsyncClient(tcp(node), reply["inventory"]["uuid"]) as u:
            await u.call("UpdateUser", {"uuid": "al", "description": "me"})
            rows = (await u.call("QueryAuditLog"))["inventories"]
            assert [r["apiName"] for r in rows] == ["UpdateUser"]  # a user: its own calls
        assert "UpdateUser" in {
            r["apiName"] for r in (await a.call("QueryAuditLog"))["inventories"]
        }
    everyone = {r["accountName"] for r in await trail(api)}
    assert {"admin", "alice", "bob"} <= everyone


async def test_rows_are_never_changed_or_removed(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    alice = await session_for(node, api, "alice")
    async with AsyncClient(tcp(node), alice) as a:
        await a.call("CreateUser", {"name": "al", "password": "al-password"})
    before = await trail(api)
    await api("DeleteAccount", uuid="alice", cascade=True)
    after = await trail(api)
    assert after[: len(before)] == before  # deleting the account keeps its history
    assert after[-1]["apiName"] == "DeleteAccount"
    # no API but the query touches the type; the catalogue is the whole API surface
    catalogue = (await api("GetApiCatalogue"))["catalogue"]
    on_audit = [a["name"] for a in catalogue["apis"] if a["resource"] == "AuditLog"]
    assert on_audit == ["QueryAuditLog"]
    assert not any("Audit" in a["name"] for a in catalogue["apis"] if a["mutating"])


async def test_a_long_api_records_its_job(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    await api("CreateZone", name="z1")
    await api(
        "AddSimulatorBackupStorage", name="bs", url="/sim/bs", totalCapacity=2**40,
        availableCapacity=2**40,
    )  # fmt: skip
    await api("AttachBackupStorageToZone", backupStorageUuid="bs", zoneUuid="z1")
    image = await api(
        "AddImage", name="img", url="http://images.example/a.qcow2", format="qcow2",
        backupStorageUuids=["bs"],
    )  # fmt: skip
    row = (await trail(api, "apiName=AddImage"))[0]
    assert row["result"] == "ok" and len(row["jobUuid"]) == 32
    assert row["resourceUuid"] == image["inventory"]["uuid"]
    job = (await api("QueryJob", conditions=[f"uuid={row['jobUuid']}"]))["inventories"][0]
    assert job["name"] == "AddImage"


async def test_a_failing_observer_never_fails_the_call(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    seen: list[ApiCallRecord] = []

    class Broken:
        def api_called(self, record: ApiCallRecord) -> None:
            seen.append(record)
            raise RuntimeError("observer bug")

    node.extensions.add(ApiCallObserver, Broken())  # type: ignore[type-abstract]
    zone = (await api("CreateZone", name="z1"))["inventory"]
    assert seen and seen[0].api == "CreateZone" and seen[0].error is None
    assert (await trail(api))[0]["resourceUuid"] == zone["uuid"]  # the audit row still came


async def test_without_the_plugin_everything_else_works(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home", conf={"plugins.disabled": "audit"}) as (node, _s):
        api = Api(node)
        assert "audit" not in node.services and not node.plugin_errors
        await api("CreateZone", name="z1")
        assert (await api("QueryZone", count=True))["total"] == 1
        err = await error_of(api("QueryAuditLog"))
        assert err.code == "API.NOT_FOUND"


async def test_each_row_is_durable_when_its_call_returns_with_many_calls_in_flight(
    env: tuple[Node, ApiServer, Api],
) -> None:
    """Audit rows are group-committed with whatever else is written at the time, but a call
    returns (and its reply is sent) only once its own row is in the table: read here with raw
    SQL at once, before the event loop could run anything else."""
    node, _server, api = env

    async def create(i: int) -> None:
        uuid = (await api("CreateZone", name=f"z{i}"))["inventory"]["uuid"]
        with node.db.engine.connect() as conn:
            rows = conn.execute(
                text('SELECT result FROM audit_log WHERE "resourceUuid" = :u'), {"u": uuid}
            ).all()
        assert [r.result for r in rows] == ["ok"], (i, rows)

    await asyncio.gather(*(create(i) for i in range(20)))
