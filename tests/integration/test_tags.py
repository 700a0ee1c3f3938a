"""System and user tags: create, validate, query (incl. tag pseudo-fields), update, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, client_for, running_node
from zmn.api.errors import ZmnError
from zmn.core.db import new_uuid
from zmn.core.models import TagVO
from zmn.core.node import Node
from zmn.core.service import Service
from zmn.core.tags import TagPattern
from zmn.server import ApiServer
from zmn.services.config.service import ConfigService
from zmn.services.identity.service import IdentityService
from zmn.services.query.service import QueryService
from zmn.services.tag.service import TagService
from zmn.services.zone.service import ZoneService

pytestmark = pytest.mark.usefixtures("cheap_hashes")


def _no_root(tokens: dict[str, str]) -> str | None:
    return "root cannot own a zone" if tokens["owner"] == "root" else None


class ZonePatterns(Service):
    """System-tag patterns for zones, as a service would declare them."""

    name = "testZonePatterns"
    tag_patterns = [
        TagPattern("owner::{owner}", "Zone", "who runs the zone", validator=_no_root),
        TagPattern("rack::{row}::{slot}", "Zone"),
        TagPattern("color::{color}", "Account"),
    ]


SERVICES = [IdentityService, ConfigService, QueryService, TagService, ZoneService, ZonePatterns]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer, Api]]:
    async with running_node(tmp_path / "home", services=SERVICES) as (node, server):
        yield node, server, Api(node)


async def error_of(coro: Any) -> ZmnError:
    with pytest.raises(ZmnError) as err:
        await coro
    return err.value


def names(reply: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for r in reply["inventories"])


async def test_user_tags_drive_the_tag_pseudo_fields(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    await api("CreateZone", name="z1", userTags=["prod"])
    await api("CreateZone", name="z2")
    await api("CreateZone", name="z3")
    tag = (await api("CreateUserTag", resourceType="Zone", resourceUuid="z2", tag="prod"))[
        "inventory"
    ]
    await api("CreateUserTag", resourceType="Zone", resourceUuid="z3", tag="staging")
    assert tag["type"] == "User" and tag["resourceType"] == "Zone" and tag["tag"] == "prod"
    assert names(await api("QueryZone", conditions=["__userTag__=prod"])) == ["z1", "z2"]
    assert names(await api("QueryZone", conditions=["__userTag__!=prod"])) == ["z3"]
    assert names(await api("QueryZone", conditions=["__userTag__?=prod,staging"])) == [
        "z1",
        "z2",
        "z3",
    ]
    assert names(await api("QueryZone", conditions=["__userTag__~=stag"])) == ["z3"]
    assert names(await api("QueryZone", conditions=["__systemTag__=prod"])) == []
    await api("DeleteTag", uuid=tag["uuid"])
    assert names(await api("QueryZone", conditions=["__userTag__=prod"])) == ["z1"]


async def test_system_tags_are_checked_against_patterns(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    await api("CreateZone", name="z1")
    tag = (
        await api("CreateSystemTag", resourceType="Zone", resourceUuid="z1", tag="owner::alice")
    )["inventory"]
    assert tag["type"] == "System" and tag["inherent"] is False
    err = await error_of(
        api("CreateSystemTag", resourceType="Zone", resourceUuid="z1", tag="ownr::alice")
    )
    assert err.code == "TAG.NO_PATTERN" and err.field == "tag"
    assert err.details["choices"] == ["owner::{owner}", "rack::{row}::{slot}"]
    err = await error_of(
        api("CreateSystemTag", resourceType="Zone", resourceUuid="z1", tag="owner::root")
    )
    assert err.code == "TAG.INVALID" and "root cannot own" in err.message
    assert names(await api("QueryZone", conditions=["__systemTag__=owner::alice"])) == ["z1"]
    assert names(await api("QueryZone", conditions=["__systemTag__~=owner::%"])) == ["z1"]
    # user tags are free text: no pattern needed
    await api("CreateUserTag", resourceType="Zone", resourceUuid="z1", tag="ownr::alice")


async def test_tagged_resource_must_exist(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    err = await error_of(
        api("CreateUserTag", resourceType="Zone", resourceUuid=new_uuid(), tag="prod")
    )
    assert err.code == "ZONE.NOT_FOUND" and err.field == "resourceUuid"
    err = await error_of(api("CreateUserTag", resourceType="Zone", resourceUuid="nope", tag="x"))
    assert err.code == "ZONE.NOT_FOUND"
    err = await error_of(api("CreateUserTag", resourceType="Zonee", resourceUuid="z", tag="x"))
    assert err.field == "resourceType" and "did you mean Zone?" in err.message
    err = await error_of(
        api("CreateUserTag", resourceType="GlobalConfig", resourceUuid="x", tag="x")
    )
    assert err.code == "TAG.NOT_TAGGABLE"
    await api("CreateZone", name="z1")
    err = await error_of(api("CreateUserTag", resourceType="Zone", resourceUuid="z1", tag=" "))
    assert err.field == "tag"


async def test_query_system_and_user_tags_separately(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    zone = (await api("CreateZone", name="z1", userTags=["prod"]))["inventory"]
    await api("CreateSystemTag", resourceType="Zone", resourceUuid="z1", tag="rack::3::12")
    system = (await api("QuerySystemTag"))["inventories"]
    user = (await api("QueryUserTag"))["inventories"]
    assert [t["tag"] for t in system] == ["rack::3::12"]
    assert [t["tag"] for t in user] == ["prod"]
    assert (await api("QuerySystemTag", conditions=[f"resourceUuid={zone['uuid']}"], count=True))[
        "total"
    ] == 1
    assert (await api("QueryUserTag", conditions=["tag=rack::3::12"]))["inventories"] == []


async def test_creating_the_same_tag_twice_gives_one_tag(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    await api("CreateZone", name="z1")
    first = await api("CreateUserTag", resourceType="Zone", resourceUuid="z1", tag="prod")
    again = await api("CreateUserTag", resourceType="Zone", resourceUuid="z1", tag="prod")
    assert first == again
    assert (await api("QueryUserTag", count=True))["total"] == 1


async def test_update_system_tag(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    await api("CreateZone", name="z1", userTags=["prod"])
    tag = (
        await api("CreateSystemTag", resourceType="Zone", resourceUuid="z1", tag="owner::alice")
    )["inventory"]
    updated = (await api("UpdateSystemTag", uuid=tag["uuid"], tag="owner::bob"))["inventory"]
    assert updated["uuid"] == tag["uuid"] and updated["tag"] == "owner::bob"
    assert names(await api("QueryZone", conditions=["__systemTag__=owner::bob"])) == ["z1"]
    err = await error_of(api("UpdateSystemTag", uuid=tag["uuid"], tag="nonsense"))
    assert err.code == "TAG.NO_PATTERN"
    user_tag = (await api("QueryUserTag"))["inventories"][0]
    err = await error_of(api("UpdateSystemTag", uuid=user_tag["uuid"], tag="owner::x"))
    assert err.code == "SYSTEM_TAG.NOT_FOUND"
    err = await error_of(api("UpdateSystemTag", uuid="owner::bob", tag="owner::x"))
    assert err.code == "SYSTEM_TAG.NOT_FOUND"


async def test_inherent_tags_cannot_be_changed(env: tuple[Node, ApiServer, Api]) -> None:
    node, _server, api = env
    zone = (await api("CreateZone", name="z1"))["inventory"]
    uuid = new_uuid()
    with node.db.tx() as s:  # as a service writes them
        s.add(
            TagVO(
                uuid=uuid,
                resourceUuid=zone["uuid"],
                resourceType="Zone",
                type="System",
                tag="owner::system",
                inherent=True,
            )
        )
    assert (await error_of(api("DeleteTag", uuid=uuid))).code == "TAG.INHERENT"
    err = await error_of(api("UpdateSystemTag", uuid=uuid, tag="owner::me"))
    assert err.code == "TAG.INHERENT"
    assert (await error_of(api("DeleteTag", uuid=new_uuid()))).code == "TAG.NOT_FOUND"


async def test_deleting_a_resource_deletes_its_tags(env: tuple[Node, ApiServer, Api]) -> None:
    _node, _server, api = env
    await api("CreateZone", name="z1", userTags=["prod"], systemTags=["owner::alice"])
    await api("DeleteZone", uuid="z1")
    assert (await api("QueryUserTag", count=True))["total"] == 0
    assert (await api("QuerySystemTag", count=True))["total"] == 0


async def test_normal_accounts_tag_and_see_only_what_they_own(
    env: tuple[Node, ApiServer, Api],
) -> None:
    _node, server, api = env
    await api("CreateZone", name="z1", userTags=["prod"])
    for name in ("alice", "bob"):
        await api("CreateAccount", name=name, password=f"{name}-password")
    bob_tag = (await api("CreateUserTag", resourceType="Account", resourceUuid="bob", tag="b"))[
        "inventory"
    ]
    login = await api("LogInByAccount", accountName="alice", password="alice-password")
    async with client_for(server, session=login["inventory"]["uuid"]) as c:
        err = await error_of(
            c.call("CreateUserTag", {"resourceType": "Zone", "resourceUuid": "z1", "tag": "mine"})
        )
        assert err.code == "TAG.NOT_ALLOWED"
        err = await error_of(
            c.call("CreateUserTag", {"resourceType": "Account", "resourceUuid": "bob", "tag": "x"})
        )
        assert err.code == "ACCOUNT.NOT_FOUND"
        mine = await c.call(
            "CreateSystemTag",
            {"resourceType": "Account", "resourceUuid": "alice", "tag": "color::blue"},
        )
        await c.call(
            "CreateUserTag", {"resourceType": "Account", "resourceUuid": "alice", "tag": "a"}
        )
        assert [t["tag"] for t in (await c.call("QueryUserTag"))["inventories"]] == ["a"]
        assert [t["tag"] for t in (await c.call("QuerySystemTag"))["inventories"]] == [
            "color::blue"
        ]
        assert names(await c.call("QueryAccount", {"conditions": ["__userTag__=a"]})) == ["alice"]
        err = await error_of(c.call("DeleteTag", {"uuid": bob_tag["uuid"]}))
        assert err.code == "TAG.NOT_FOUND"
        err = await error_of(
            c.call("UpdateSystemTag", {"uuid": bob_tag["uuid"], "tag": "color::red"})
        )
        assert err.code == "SYSTEM_TAG.NOT_FOUND"
        await c.call("UpdateSystemTag", {"uuid": mine["inventory"]["uuid"], "tag": "color::red"})
        await c.call("DeleteTag", {"uuid": mine["inventory"]["uuid"]})
    assert sorted(t["tag"] for t in (await api("QueryUserTag"))["inventories"]) == [
        "a",
        "b",
        "prod",
    ]
