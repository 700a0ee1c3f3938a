"""Tags: system tags (machine-read, pattern-checked) and user tags (free text).

A normal account tags only resources it owns and sees only the tags on them; admins tag
anything. Inherent tags (written by services, not by users) cannot be changed or deleted
through the API. Queries can also filter any resource type by its tags with the
``__systemTag__`` / ``__userTag__`` pseudo-fields (handled by the query compiler).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from zmn.api.errors import Conflict, InvalidArgument, PermissionDenied, not_found
from zmn.api.message import UUID_RE
from zmn.core import crud
from zmn.core.bus import Principal
from zmn.core.db import new_uuid, utcnow
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.resource import ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.services.tag.api import CreateSystemTag, CreateUserTag, DeleteTag, UpdateSystemTag
from zmn.services.tag.models import SystemTagVO, UserTagVO

KINDS = {"System": ("SystemTag", SystemTagVO), "User": ("UserTag", UserTagVO)}
MAX_TAG = 1024


def on_owned_resources(model: Any) -> Callable[[Principal], list[Any]]:
    """Access filter: a normal account sees the tags on the resources it owns."""
    column = model.__table__.c.resourceUuid

    def clauses(principal: Principal) -> list[Any]:
        owned = select(AccountResourceRefVO.resourceUuid).where(
            AccountResourceRefVO.accountUuid == principal.accountUuid
        )
        return [column.in_(owned)]

    return clauses


def tag_not_found(uuid: str) -> Exception:
    return not_found("Tag", uuid, "uuid")


class TagService(Service):
    name = "tag"
    summary = "system and user tags"
    error_codes = {
        "TAG.NOT_FOUND": "no tag with that UUID",
        "TAG.NO_PATTERN": "the system tag matches no pattern of the resource type",
        "TAG.INVALID": "the system tag's values are not valid",
        "TAG.INHERENT": "the tag is managed by the system and cannot be changed",
        "TAG.NOT_TAGGABLE": "resources of that type cannot carry tags",
        "TAG.NOT_ALLOWED": "normal accounts tag only resources they own",
        "SYSTEM_TAG.NOT_FOUND": "no system tag with that UUID",
    }

    def declare(self, registry: ResourceRegistry) -> None:
        for kind, (type_name, model) in KINDS.items():
            registry.add(
                ResourceType(
                    type_name,
                    model,
                    self.name,
                    "system-tag" if kind == "System" else "user-tag",
                    columns=["uuid", "resourceType", "resourceUuid", "tag"],
                    docs={
                        "resourceUuid": "UUID of the tagged resource",
                        "resourceType": "type of the tagged resource",
                        "inherent": "written by a service; cannot be changed through the API",
                    },
                    access_filter=on_owned_resources(model),
                    summary=f"a {kind.lower()} tag on a resource",
                )
            )

    # ----------------------------------------------------------------- create

    @handler(CreateSystemTag)
    async def create_system_tag(self, msg: CreateSystemTag, call: Call) -> dict[str, Any]:
        return await self._create(call, "System", msg.resourceType, msg.resourceUuid, msg.tag)

    @handler(CreateUserTag)
    async def create_user_tag(self, msg: CreateUserTag, call: Call) -> dict[str, Any]:
        return await self._create(call, "User", msg.resourceType, msg.resourceUuid, msg.tag)

    async def _create(
        self, call: Call, kind: str, resource_type: str, resource: str, tag: str
    ) -> dict[str, Any]:
        node = self.node
        target = node.resources.get(resource_type)
        if not target.has_uuid:
            raise InvalidArgument(
                f"{target.name} resources cannot carry tags",
                code="TAG.NOT_TAGGABLE",
                field="resourceType",
            )
        if not call.principal.is_admin and not target.owned:
            raise PermissionDenied(
                f"only admins can tag {target.name} resources",
                code="TAG.NOT_ALLOWED",
                field="resourceType",
            )
        _check_text(tag)
        if kind == "System":
            node.tag_patterns.validate(target.name, tag)
        type_name, model = KINDS[kind]
        rt = node.resources.get(type_name)
        with call.tx() as s:
            uuid = crud.resolve(s, node, call.principal, target.name, resource, "resourceUuid")
            row = s.scalar(
                select(TagVO).where(
                    TagVO.resourceUuid == uuid, TagVO.type == kind, TagVO.tag == tag
                )
            )
            created = row is None
            if row is None:  # the same tag twice on one resource is one tag
                row = TagVO(
                    uuid=new_uuid(),
                    resourceUuid=uuid,
                    resourceType=target.name,
                    type=kind,
                    tag=tag,
                    inherent=False,
                )
                s.add(row)
                s.flush()
            inv = rt.inventories(s, [s.get(model, row.uuid)])[0]
        if created:
            await call.publish(f"/{rt.cli}/created", {"resourceType": type_name, "inventory": inv})
        return {"inventory": inv}

    # ----------------------------------------------------------------- update, delete

    @handler(UpdateSystemTag)
    async def update_system_tag(self, msg: UpdateSystemTag, call: Call) -> dict[str, Any]:
        _check_text(msg.tag)
        rt = self.node.resources.get("SystemTag")
        with call.tx() as s:
            row = s.get(TagVO, msg.uuid)
            if row is None or row.type != "System":
                raise not_found("SystemTag", msg.uuid, "uuid")
            _refuse_inherent(row)
            self.node.tag_patterns.validate(row.resourceType, msg.tag)
            old = row.tag
            row.tag = msg.tag
            row.lastOpDate = utcnow()
            s.flush()
            inv = rt.inventories(s, [s.get(SystemTagVO, row.uuid)])[0]
        await call.publish(
            "/system-tag/updated", {"resourceType": "SystemTag", "inventory": inv, "oldTag": old}
        )
        return {"inventory": inv}

    @handler(DeleteTag)
    async def delete_tag(self, msg: DeleteTag, call: Call) -> dict[str, Any]:
        if not UUID_RE.match(msg.uuid):
            raise tag_not_found(msg.uuid)
        with call.tx() as s:
            row = s.get(TagVO, msg.uuid)
            if row is None or row.type not in KINDS:
                raise tag_not_found(msg.uuid)
            if not call.principal.is_admin:
                owner = s.get(AccountResourceRefVO, row.resourceUuid)
                if owner is None or owner.accountUuid != call.principal.accountUuid:
                    raise tag_not_found(msg.uuid)
            _refuse_inherent(row)
            type_name, model = KINDS[row.type]
            rt = self.node.resources.get(type_name)
            inv = rt.inventories(s, [s.get(model, row.uuid)])[0]
            s.delete(row)
        await call.publish(f"/{rt.cli}/deleted", {"resourceType": type_name, "inventory": inv})
        return {}


def _check_text(tag: str) -> None:
    if not tag.strip():
        raise InvalidArgument("tag must not be empty", field="tag")
    if len(tag) > MAX_TAG:
        raise InvalidArgument(f"tag is longer than {MAX_TAG} characters", field="tag")


def _refuse_inherent(row: TagVO) -> None:
    if row.inherent:
        raise Conflict(
            f"tag {row.tag!r} is inherent: its service manages it",
            code="TAG.INHERENT",
            field="uuid",
        )
