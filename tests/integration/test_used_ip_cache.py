"""The node's copy of an L3's used addresses: when it expires the node counts the L3's rows
and reads them again only when another writer changed them; no address is ever given twice.
Runs on every database engine (tests/conftest.py ENGINE_MODULES)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, insert

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import build_cloud
from zmn.core import fastsql
from zmn.core.db import new_uuid
from zmn.core.service import Call
from zmn.services.network.ipam import USED_CACHE_SECONDS
from zmn.services.network.models import UsedIpVO


async def test_an_expired_copy_is_counted_and_read_again_only_when_changed(
    tmp_path: Path, db_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api, ip_range=("10.0.0.100", "10.0.0.119"))
        l3 = cloud["l3"]
        call = Call(node, node.admin_principal(), "test")
        cache = node.services["network"].used_ips  # type: ignore[attr-defined]
        reads: list[str] = []

        def on_execute(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if "used_ip" in statement and statement.lstrip().upper().startswith("SELECT"):
                reads.append("count" if "count(" in statement.lower() else "rows")

        event.listen(node.db.engine, "before_cursor_execute", on_execute)
        real_fast_execute = fastsql.FastConnection.execute

        def fast_execute(self: Any, statement: Any, params: Any = None) -> Any:
            on_execute(None, None, str(statement))  # the fast path bypasses the events
            return real_fast_execute(self, statement, params)

        monkeypatch.setattr(fastsql.FastConnection, "execute", fast_execute)

        async def allocate() -> str:
            got = await call.call(node.apis.get("AllocateIp")(l3NetworkUuid=l3))
            return str(got["usedIp"]["ip"])

        def expire() -> None:
            cache.l3s[l3].loaded_at -= USED_CACHE_SECONDS + 1
            reads.clear()

        def other_writer(stmt: Any) -> None:  # another node, or a path without ReleaseIp
            with node.db.engine.begin() as conn:
                conn.execute(stmt)

        assert [await allocate() for _ in range(3)] == ["10.0.0.100", "10.0.0.101", "10.0.0.102"]
        expire()
        assert await allocate() == "10.0.0.103"
        assert reads == ["count"]  # the same rows: not read again

        value = int(ipaddress.IPv4Address("10.0.0.104"))
        other_writer(
            insert(UsedIpVO).values(
                uuid=new_uuid(),
                l3NetworkUuid=l3,
                ipRangeUuid=cache.l3s[l3].ranges[0],
                ip="10.0.0.104",
                ipInLong=value,
                netmask="255.255.255.0",
                gateway="10.0.0.1",
                usedFor="Vm",
            )
        )
        expire()
        assert await allocate() == "10.0.0.105"  # another writer's address is skipped
        assert reads == ["count", "rows"]

        other_writer(delete(UsedIpVO).where(UsedIpVO.ip == "10.0.0.101"))
        expire()
        assert await allocate() == "10.0.0.101"  # another writer's release is found
        assert reads == ["count", "rows"]

        rows = (await api("QueryUsedIp", conditions=[f"l3NetworkUuid={l3}"]))["inventories"]
        ips = [r["ip"] for r in rows]
        assert len(ips) == len(set(ips)) == 6
