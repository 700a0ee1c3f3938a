"""Ownership: a normal account sees and touches only the rows it owns.

A tiny owned resource type (``TestWidget``) is declared by a service defined here, on its
own declarative base so that the product's metadata (and its migrations) never see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tests.support.inproc import Api, client_for, running_node
from zmn.api.errors import ZmnError
from zmn.api.message import CreateMessage, DeleteMessage, Doc, api
from zmn.core import crud
from zmn.core.node import Node
from zmn.core.resource import ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.server import ApiServer
from zmn.services.config.service import ConfigService
from zmn.services.identity.service import IdentityService
from zmn.services.query.service import QueryService
from zmn.services.tag.service import TagService

pytestmark = pytest.mark.usefixtures("cheap_hashes")


class WidgetBase(DeclarativeBase):
    pass


class WidgetVO(WidgetBase):
    __tablename__ = "test_widget"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255), default=None)


@api(resource="TestWidget", verb="create")
class CreateTestWidget(CreateMessage, kw_only=True):
    """Create a widget owned by the caller."""

    name: Annotated[str, Doc("name")]


@api(resource="TestWidget", verb="delete")
class DeleteTestWidget(DeleteMessage, kw_only=True):
    """Delete a widget."""


class WidgetService(Service):
    name = "testWidget"

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(ResourceType("TestWidget", WidgetVO, self.name, "test-widget", owned=True))

    @handler(CreateTestWidget)
    async def create(self, msg: CreateTestWidget, call: Call) -> dict[str, Any]:
        return await crud.create(call, "TestWidget", WidgetVO(name=msg.name), msg)

    @handler(DeleteTestWidget)
    async def delete(self, msg: DeleteTestWidget, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "TestWidget", msg.uuid)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Node, ApiServer, Api]]:
    services = [IdentityService, ConfigService, QueryService, TagService, WidgetService]
    async with running_node(tmp_path / "home", services=services) as (node, server):
        WidgetBase.metadata.create_all(node.db.engine)
        yield node, server, Api(node)


async def session_for(api: Api, name: str) -> str:
    await api("CreateAccount", name=name, password=f"{name}-password")
    reply = await api("LogInByAccount", accountName=name, password=f"{name}-password")
    return str(reply["inventory"]["uuid"])


def names(reply: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for r in reply["inventories"])


async def test_normal_accounts_see_only_their_own_rows(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    alice, bob = await session_for(api, "alice"), await session_for(api, "bob")
    await api("CreateTestWidget", name="admin-widget")
    async with client_for(server, session=alice) as a, client_for(server, session=bob) as b:
        await a.call("CreateTestWidget", {"name": "a1"})
        await a.call("CreateTestWidget", {"name": "a2"})
        bw = (await b.call("CreateTestWidget", {"name": "b1"}))["inventory"]
        assert names(await a.call("QueryTestWidget")) == ["a1", "a2"]
        assert names(await b.call("QueryTestWidget")) == ["b1"]
        assert (await a.call("QueryTestWidget", {"count": True}))["total"] == 2
        assert names(await a.call("QueryTestWidget", {"conditions": ["name=b1"]})) == []
        assert names(await a.call("QueryAccount")) == ["alice"]
        # another account's row cannot be named, by UUID or by name
        for ref in (bw["uuid"], "b1"):
            with pytest.raises(ZmnError) as err:
                await a.call("DeleteTestWidget", {"uuid": ref})
            assert err.value.code == "TEST_WIDGET.NOT_FOUND"
    assert names(await api("QueryTestWidget")) == ["a1", "a2", "admin-widget", "b1"]
    assert names(await api("QueryAccount")) == ["admin", "alice", "bob"]


async def test_a_taken_resource_uuid_is_not_revealed(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    alice, bob = await session_for(api, "alice"), await session_for(api, "bob")
    uuid = "2" * 32
    async with client_for(server, session=alice) as a, client_for(server, session=bob) as b:
        await a.call("CreateTestWidget", {"name": "a1", "resourceUuid": uuid})
        with pytest.raises(ZmnError) as err:
            await b.call("CreateTestWidget", {"name": "b1", "resourceUuid": uuid})
        assert err.value.code == "RESOURCE.UUID_TAKEN"


async def test_deleting_an_account_deletes_what_it_owns(env: tuple[Node, ApiServer, Api]) -> None:
    _node, server, api = env
    alice = await session_for(api, "alice")
    async with client_for(server, session=alice) as a:
        await a.call("CreateTestWidget", {"name": "a1", "userTags": ["mine"]})
    with pytest.raises(ZmnError) as err:
        await api("DeleteAccount", uuid="alice")
    assert err.value.code == "ACCOUNT.HAS_RESOURCES"
    assert err.value.details["resources"]["TestWidget"]
    await api("DeleteAccount", uuid="alice", cascade=True)
    assert names(await api("QueryTestWidget")) == []
    assert (await api("QueryUserTag", count=True))["total"] == 0
