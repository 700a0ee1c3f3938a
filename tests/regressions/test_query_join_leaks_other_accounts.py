"""Regression: a query condition through a join saw every account's rows.

``QueryL3Network securityGroup.name=X`` run by bob matched when *alice* had a security group
named X on that network, so any tenant could test (and with ``~=`` spell out, letter by
letter) the names of other tenants' resources, and reach admin-only types (used IPs, hosts)
through joins from shared ones. Found by the tenant-isolation tests; the compiler now limits
every joined type to the rows the caller could query itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.inproc import Api, running_node
from zmn.api.errors import PermissionDenied
from zmn.client import AsyncClient

pytestmark = pytest.mark.usefixtures("cheap_hashes")


async def test_joins_see_only_the_callers_rows(tmp_path: Path) -> None:
    conf = {"api.tcp.listen": "127.0.0.1:0"}
    async with running_node(tmp_path / "home", conf=conf) as (node, _server):
        api = Api(node)
        tcp = next(e for e in node.endpoints if e.startswith("tcp://"))
        await api("CreateZone", name="z1")
        await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth0")
        await api("CreateL3Network", name="l3", l2NetworkUuid="l2")
        sessions = {}
        for name in ("alice", "bob"):
            await api("CreateAccount", name=name, password=f"{name}-password")
            async with AsyncClient(tcp) as c:
                reply = await c.call(
                    "LogInByAccount", {"accountName": name, "password": f"{name}-password"}
                )
            sessions[name] = reply["inventory"]["uuid"]
        secret = ["securityGroup.name=alice-secret"]
        async with AsyncClient(tcp, sessions["alice"]) as alice:
            sg = (await alice.call("CreateSecurityGroup", {"name": "alice-secret"}))["inventory"]
            await alice.call(
                "AttachSecurityGroupToL3Network",
                {"securityGroupUuid": sg["uuid"], "l3NetworkUuid": "l3"},
            )
            assert (await alice.call("QueryL3Network", {"conditions": secret}))["inventories"]
        async with AsyncClient(tcp, sessions["bob"]) as bob:
            assert len((await bob.call("QueryL3Network"))["inventories"]) == 1  # shared
            for conditions in (secret, ["securityGroup.name~=alice%"]):
                found = await bob.call("QueryL3Network", {"conditions": conditions, "count": True})
                assert found["total"] == 0, conditions
            with pytest.raises(PermissionDenied) as err:
                await bob.call("QueryL3Network", {"conditions": ["usedIp.ip!=null"]})
            assert err.value.code == "IDENTITY.ADMIN_ONLY"
        assert (await api("QueryL3Network", conditions=secret, count=True))["total"] == 1
