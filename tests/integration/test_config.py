"""Global configuration through the API: query, update, reset, options, events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, client_for, running_node
from zmn.api.errors import InvalidArgument, NotFound, ZmnError
from zmn.core.bus import Event
from zmn.core.node import Node
from zmn.server import ApiServer
from zmn.services.config.service import ConfigService
from zmn.services.identity.service import IdentityService
from zmn.services.management.service import ManagementService
from zmn.services.query.service import QueryService

pytestmark = pytest.mark.usefixtures("cheap_hashes")

SERVICES = [IdentityService, ConfigService, QueryService, ManagementService]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer, Api]]:
    async with running_node(tmp_path / "home", services=SERVICES) as (node, server):
        yield node, server, Api(node)


async def error_of(coro: Any) -> ZmnError:
    with pytest.raises(ZmnError) as err:
        await coro
    return err.value


async def test_query_by_category(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    rows = (await api("QueryGlobalConfig", conditions=["category=identity"]))["inventories"]
    by_name = {r["name"]: r for r in rows}
    assert {"session.timeout", "login.maxFailures", "login.lockoutSeconds"} <= set(by_name)
    timeout = by_name["session.timeout"]
    assert (timeout["value"], timeout["defaultValue"], timeout["type"]) == ("7200", "7200", "int")
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows)  # primary-key order
    assert (await api("QueryGlobalConfig", conditions=["category=vm"]))["inventories"] == []
    counted = await api("QueryGlobalConfig", conditions=["category=managementNode"], count=True)
    assert counted == {"total": 2}
    picked = await api(
        "QueryGlobalConfig",
        conditions=["name~=session.%"],
        fields=["category", "name", "value"],
        sortBy="name",
        sortDirection="desc",
    )
    assert picked["inventories"] == [
        {"category": "identity", "name": "session.timeout", "value": "7200"},
        {"category": "identity", "name": "session.maxConcurrent", "value": "0"},
    ]


async def test_update_validates_writes_caches_and_publishes(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, _server, api = env
    events: list[Event] = []
    node.bus.subscribe("/globalconfig/change", events.append)
    reply = await api("UpdateGlobalConfig", category="identity", name="session.timeout", value="60")
    assert reply["inventory"]["value"] == "60" and reply["inventory"]["defaultValue"] == "7200"
    assert node.global_config.get("identity", "session.timeout") == 60
    assert [e.data for e in events] == [
        {"category": "identity", "name": "session.timeout", "oldValue": "7200", "newValue": "60"}
    ]
    # a JSON client sends a typed value, not text
    await api("UpdateGlobalConfig", category="identity", name="session.timeout", value=90)
    assert node.global_config.get("identity", "session.timeout") == 90
    rows = await api("QueryGlobalConfig", conditions=["category=identity", "name=session.timeout"])
    assert rows["inventories"][0]["value"] == "90"


@pytest.mark.parametrize(
    ("value", "words"),
    [("soon", "takes a int"), ("0", "must be >= 1"), ("1.5", "takes a int")],
)
async def test_bad_values_are_refused(
    env: tuple[Node, ApiServer, Api], value: str, words: str
) -> None:
    node, _server, api = env
    err = await error_of(
        api("UpdateGlobalConfig", category="identity", name="session.timeout", value=value)
    )
    assert isinstance(err, InvalidArgument) and err.field == "value"
    assert words in err.message
    assert node.global_config.get("identity", "session.timeout") == 7200


async def test_unknown_names_list_the_known_ones(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    err = await error_of(api("UpdateGlobalConfig", category="identity", name="nope", value="1"))
    assert isinstance(err, NotFound) and err.code == "GLOBAL_CONFIG.NOT_FOUND"
    assert "identity/session.timeout" in err.message
    err = await error_of(api("ResetGlobalConfig", category="vmm", name="x"))
    assert err.code == "GLOBAL_CONFIG.NOT_FOUND"
    assert "identity" in err.message and "managementNode" in err.message


async def test_reset_and_options(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    await api("UpdateGlobalConfig", category="identity", name="login.maxFailures", value="3")
    options = await api("GetGlobalConfigOptions", category="identity", name="login.maxFailures")
    assert options["options"]["value"] == "3"
    assert options["options"]["defaultValue"] == "10"
    assert options["options"]["type"] == "int" and options["options"]["min"] == 0
    reply = await api("ResetGlobalConfig", category="identity", name="login.maxFailures")
    assert reply["inventory"]["value"] == "10"
    assert node.global_config.get("identity", "login.maxFailures") == 10


async def test_only_admins_update(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    await api("CreateAccount", name="alice", password="alice-pass")
    session = (await api("LogInByAccount", accountName="alice", password="alice-pass"))["inventory"]
    async with client_for(server, session=session["uuid"]) as c:
        rows = await c.call("QueryGlobalConfig", {"conditions": ["category=identity"]})
        assert rows["inventories"]  # reading is allowed
        err = await error_of(
            c.call(
                "UpdateGlobalConfig",
                {"category": "identity", "name": "session.timeout", "value": "99999"},
            )
        )
        assert err.code == "IDENTITY.ADMIN_ONLY"


async def test_values_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_node(home, services=SERVICES) as (node, _server):
        await Api(node)(
            "UpdateGlobalConfig", category="identity", name="session.timeout", value="61"
        )
    async with running_node(home, services=SERVICES) as (node, _server):
        assert node.global_config.get("identity", "session.timeout") == 61


async def test_changes_heard_from_the_bus_update_the_cache(
    env: tuple[Node, ApiServer, Api],
) -> None:
    node, _server, _api = env  # what another node's update looks like here
    await node.bus.publish(
        "/globalconfig/change",
        {"category": "identity", "name": "session.timeout", "oldValue": "7200", "newValue": "42"},
    )
    assert node.global_config.get("identity", "session.timeout") == 42
    await node.bus.publish(  # a bad or unknown event is ignored
        "/globalconfig/change", {"category": "identity", "name": "session.timeout", "newValue": "x"}
    )
    assert node.global_config.get("identity", "session.timeout") == 42
