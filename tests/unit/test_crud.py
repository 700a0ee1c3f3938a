"""crud: names to UUIDs (ambiguity, ownership), idempotent creates, deletes with cascade rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tests.support.querymodel import build_node
from zmn.api.errors import Conflict, InvalidArgument, InvalidState, NotFound
from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api
from zmn.core import crud
from zmn.core.bus import Event, Principal
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.node import Node
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.core.tags import TagPattern


class CrudBase(DeclarativeBase):
    """Test tables only, kept out of the product's Base.metadata."""


class BoxVO(CrudBase):
    __tablename__ = "crudtest_box"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    state: Mapped[str] = mapped_column(String(16), default="Enabled")


class ItemVO(CrudBase):
    __tablename__ = "crudtest_item"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    boxUuid: Mapped[str] = mapped_column(String(32))


class NoteVO(CrudBase):
    __tablename__ = "crudtest_note"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    boxUuid: Mapped[str | None] = mapped_column(String(32), default=None)


@api(resource="Box", verb="create")
class CreateBox(CreateMessage, kw_only=True):
    """Create a box."""

    name: Annotated[str, Doc("box name")]


@api(resource="Box", verb="delete")
class DeleteBox(DeleteMessage, kw_only=True):
    """Delete a box."""


@api(resource="Box", verb="change-state")
class ChangeBoxState(ApiMessage, kw_only=True):
    """Enable or disable a box."""

    uuid: Annotated[str, Doc("box")]
    stateEvent: Annotated[str, Doc("enable or disable")]


@api(resource="Item", verb="create")
class CreateItem(CreateMessage, kw_only=True):
    """Create an item in a box."""

    name: Annotated[str, Doc("item name")]
    boxUuid: Annotated[str, Doc("box"), Ref("Box")]


@api(resource="Item", verb="delete")
class DeleteItem(DeleteMessage, kw_only=True):
    """Delete an item."""


@api(resource="Item", verb="move")
class MoveItems(ApiMessage, kw_only=True):
    """Names in a list parameter are resolved too."""

    boxUuids: Annotated[list[str], Doc("boxes"), Ref("Box")]


BOX_MACHINE = StateMachine(
    "Box", {("Enabled", "disable"): "Disabled", ("Disabled", "enable"): "Enabled"}
)
DELETED_ITEMS: list[str] = []


class CrudService(Service):
    name = "crudtest"
    tag_patterns = [TagPattern("colour::{colour}", "Box")]

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(ResourceType("Box", BoxVO, self.name, "box"))
        registry.add(
            ResourceType(
                "Item", ItemVO, self.name, "item", refs={"boxUuid": RefSpec("Box")}, owned=True
            )
        )
        registry.add(
            ResourceType(
                "Note",
                NoteVO,
                self.name,
                "note",
                refs={"boxUuid": RefSpec("Box", on_delete="detach")},
            )
        )

    @handler(CreateBox)
    async def create_box(self, msg: CreateBox, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("Box")
        return await crud.create(
            call,
            "Box",
            BoxVO(name=msg.name),
            msg,
            check=lambda s: crud.unique_name(s, rt, msg.name),
        )

    @handler(DeleteBox)
    async def delete_box(self, msg: DeleteBox, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "Box", msg.uuid, cascade=msg.cascade)

    @handler(ChangeBoxState)
    async def change_box_state(self, msg: ChangeBoxState, call: Call) -> dict[str, Any]:
        return await crud.change_state(call, "Box", msg.uuid, msg.stateEvent, BOX_MACHINE)

    @handler(CreateItem)
    async def create_item(self, msg: CreateItem, call: Call) -> dict[str, Any]:
        return await crud.create(call, "Item", ItemVO(name=msg.name, boxUuid=msg.boxUuid), msg)

    @handler(DeleteItem)
    async def delete_item(self, msg: DeleteItem, call: Call) -> dict[str, Any]:
        DELETED_ITEMS.append(msg.uuid)
        return await crud.delete(call, "Item", msg.uuid)

    @handler(MoveItems)
    async def move_items(self, msg: MoveItems, call: Call) -> dict[str, Any]:
        return {"boxUuids": msg.boxUuids}


ALICE = Principal("a" * 32, "alice", "Normal")
BOB = Principal("b" * 32, "bob", "Normal")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    DELETED_ITEMS.clear()
    n = build_node(tmp_path / "home", [CrudService])
    CrudBase.metadata.create_all(n.db.engine)
    await n.start()
    yield n
    await n.stop(grace=1)


async def call(node: Node, api_name: str, principal: Principal | None = None, **args: Any) -> Any:
    result, _ = await node.execute(api_name, args, principal=principal or node.admin_principal())
    return result


def add_boxes(node: Node, *names: str) -> list[str]:
    uuids = []
    with node.db.tx() as s:
        for i, name in enumerate(names):
            uuid = f"{len(names)}{i}".ljust(32, "0")
            s.add(BoxVO(uuid=uuid, name=name))
            uuids.append(uuid)
    return uuids


# --------------------------------------------------------------------------- resolution


async def test_resolve_by_uuid_and_by_unique_name(node: Node) -> None:
    b1, _b2 = add_boxes(node, "one", "two")
    admin = node.admin_principal()
    with node.db.tx() as s:
        assert crud.resolve(s, node, admin, "Box", b1, "boxUuid") == b1
        assert crud.resolve(s, node, admin, "Box", "one", "boxUuid") == b1


async def test_resolve_missing_names_the_field(node: Node) -> None:
    add_boxes(node, "one")
    with node.db.tx() as s, pytest.raises(NotFound) as info:
        crud.resolve(s, node, node.admin_principal(), "Box", "nope", "boxUuid")
    assert info.value.code == "BOX.NOT_FOUND"
    assert info.value.field == "boxUuid"
    with node.db.tx() as s, pytest.raises(NotFound):
        crud.resolve(s, node, node.admin_principal(), "Box", "f" * 32, "boxUuid")


async def test_ambiguous_name_is_a_conflict_listing_candidates(node: Node) -> None:
    uuids = add_boxes(node, "same", "same", "other")
    with node.db.tx() as s, pytest.raises(Conflict) as info:
        crud.resolve(s, node, node.admin_principal(), "Box", "same", "boxUuid")
    err = info.value
    assert err.code == "RESOURCE.AMBIGUOUS_NAME"
    assert err.field == "boxUuid"
    assert sorted(err.details["candidates"]) == sorted(uuids[:2])
    assert "give the UUID" in err.message


async def test_ambiguous_name_through_an_api_parameter(node: Node) -> None:
    add_boxes(node, "same", "same")
    with pytest.raises(Conflict) as info:
        await call(node, "CreateItem", name="i", boxUuid="same")
    assert info.value.code == "RESOURCE.AMBIGUOUS_NAME"
    assert info.value.field == "boxUuid"


async def test_api_reference_names_become_uuids(node: Node) -> None:
    b1, b2 = add_boxes(node, "one", "two")
    inv = (await call(node, "CreateItem", name="i1", boxUuid="two"))["inventory"]
    assert inv["boxUuid"] == b2
    assert await call(node, "MoveItems", boxUuids=["one", b2]) == {"boxUuids": [b1, b2]}
    assert await call(node, "MoveItems", boxUuids="one,two") == {"boxUuids": [b1, b2]}
    with pytest.raises(NotFound) as info:
        await call(node, "MoveItems", boxUuids=["one", "missing"])
    assert info.value.field == "boxUuids"


async def test_own_uuid_parameter_is_resolved_for_non_create_apis(node: Node) -> None:
    (b1,) = add_boxes(node, "one")
    inv = (await call(node, "ChangeBoxState", uuid="one", stateEvent="disable"))["inventory"]
    assert (inv["uuid"], inv["state"]) == (b1, "Disabled")
    with pytest.raises(InvalidState):
        await call(node, "ChangeBoxState", uuid=b1, stateEvent="disable")


async def test_owned_resources_resolve_only_for_their_owner(node: Node) -> None:
    (b1,) = add_boxes(node, "box")
    inv = (await call(node, "CreateItem", ALICE, name="mine", boxUuid=b1))["inventory"]
    with node.db.tx() as s:
        owner = s.get(AccountResourceRefVO, inv["uuid"])
        assert owner is not None and owner.accountUuid == ALICE.accountUuid
        assert crud.resolve(s, node, ALICE, "Item", "mine", "uuid") == inv["uuid"]
        with pytest.raises(NotFound):
            crud.resolve(s, node, BOB, "Item", "mine", "uuid")
        with pytest.raises(NotFound):
            crud.resolve(s, node, BOB, "Item", inv["uuid"], "uuid")
        assert crud.resolve(s, node, node.admin_principal(), "Item", "mine", "uuid") == inv["uuid"]
    # two accounts may use the same name: each resolves to its own
    bobs = (await call(node, "CreateItem", BOB, name="mine", boxUuid=b1))["inventory"]
    with node.db.tx() as s:
        assert crud.resolve(s, node, BOB, "Item", "mine", "uuid") == bobs["uuid"]
        with pytest.raises(Conflict):
            crud.resolve(s, node, node.admin_principal(), "Item", "mine", "uuid")


async def test_unavailable_type(node: Node) -> None:
    with node.db.tx() as s, pytest.raises(InvalidArgument) as info:
        crud.resolve(s, node, node.admin_principal(), "Gone", "x", "goneUuid")
    assert info.value.field == "goneUuid"


# --------------------------------------------------------------------------- create / delete


async def test_create_is_idempotent_on_resource_uuid(node: Node) -> None:
    events: list[Event] = []
    node.bus.subscribe("/box/**", events.append)
    uuid = "c" * 32
    first = await call(node, "CreateBox", name="b", resourceUuid=uuid, systemTags=["colour::red"])
    again = await call(node, "CreateBox", name="b", resourceUuid=uuid)
    assert first == again
    assert first["inventory"]["uuid"] == uuid
    assert [e.path for e in events] == ["/box/created"]
    with node.db.tx() as s:
        tags = list(s.scalars(select(TagVO.tag).where(TagVO.resourceUuid == uuid)))
    assert tags == ["colour::red"]
    with pytest.raises(InvalidArgument) as info:
        await call(node, "CreateBox", name="b2", resourceUuid="not-a-uuid")
    assert info.value.field == "resourceUuid"


async def test_create_checks_name_and_tags(node: Node) -> None:
    await call(node, "CreateBox", name="b")
    with pytest.raises(Conflict) as info:
        await call(node, "CreateBox", name="b")
    assert info.value.code == "BOX.DUPLICATE_NAME"
    with pytest.raises(InvalidArgument) as bad_tag:
        await call(node, "CreateBox", name="c", systemTags=["size::big"])
    assert bad_tag.value.code == "TAG.NO_PATTERN"
    with node.db.tx() as s:  # the refused create left nothing behind
        assert list(s.scalars(select(BoxVO.name))) == ["b"]
        assert list(s.scalars(select(TagVO))) == []


async def test_delete_refuses_with_dependents_then_cascades(node: Node) -> None:
    (b1,) = add_boxes(node, "box")
    i1 = (await call(node, "CreateItem", name="i1", boxUuid=b1, userTags=["u"]))["inventory"][
        "uuid"
    ]
    i2 = (await call(node, "CreateItem", name="i2", boxUuid=b1))["inventory"]["uuid"]
    with node.db.tx() as s:
        s.add(NoteVO(uuid="n" * 32, name="note", boxUuid=b1))
    with pytest.raises(Conflict) as info:
        await call(node, "DeleteBox", uuid="box")
    err = info.value
    assert err.code == "BOX.HAS_DEPENDENTS"
    assert sorted(err.details["dependents"]["Item"]) == sorted([i1, i2])
    assert "Note" not in err.details["dependents"]  # a detach reference does not block
    assert await call(node, "DeleteBox", uuid="box", cascade=True) == {}
    assert sorted(DELETED_ITEMS) == sorted([i1, i2])  # through the dependents' own API
    with node.db.tx() as s:
        assert s.get(BoxVO, b1) is None
        assert list(s.scalars(select(ItemVO))) == []
        note = s.get(NoteVO, "n" * 32)
        assert note is not None and note.boxUuid is None  # detached, not deleted
        assert list(s.scalars(select(TagVO))) == []
        assert list(s.scalars(select(AccountResourceRefVO))) == []


async def test_delete_missing(node: Node) -> None:
    with pytest.raises(NotFound) as info:
        await call(node, "DeleteBox", uuid="f" * 32)
    assert info.value.code == "BOX.NOT_FOUND"


async def test_a_name_in_other_letter_case_resolves_when_no_exact_name_does(node: Node) -> None:
    """Through an API parameter (the cached fast-path look-ups) as in a session: the exact
    name first, then the name compared folded, owned ones for their owner only."""
    b1, b2 = add_boxes(node, "One", "one-two")
    inv = (await call(node, "CreateItem", name="i1", boxUuid="ONE"))["inventory"]
    assert inv["boxUuid"] == b1
    assert await call(node, "MoveItems", boxUuids=["ONE-TWO", "one"]) == {"boxUuids": [b2, b1]}
    mine = (await call(node, "CreateItem", ALICE, name="Mine", boxUuid="one"))["inventory"]
    with pytest.raises(NotFound):
        await call(node, "DeleteItem", BOB, uuid="MINE")
    await call(node, "DeleteItem", ALICE, uuid="MINE")
    with node.db.tx() as s:
        assert s.get(ItemVO, mine["uuid"]) is None
