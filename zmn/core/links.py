"""Attachments through link tables, and the checks the infrastructure services share.

Cluster <-> primary storage, cluster <-> L2 network and zone <-> backup storage are
many-to-many attachments that several services make the same way: check both sides are in
the same zone, refuse a duplicate, insert or delete the link row, publish an event. The link
tables are declared with :class:`~zmn.core.resource.LinkSpec`, so ``crud.delete`` already
removes a deleted resource's link rows; this module is only the attach/detach half.

It also holds the few checks several infrastructure services make alike (zones match, a
rename keeps names unique, storage capacities add up). Other services' rows are read
through the registry's model classes, never by importing them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from zmn.api.errors import Conflict, InvalidArgument, upper_snake
from zmn.core import crud
from zmn.core.db import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.resource import LinkSpec
    from zmn.core.service import Call


def row_of(call: Call, session: Session, type_name: str, uuid: str, field: str) -> Any:
    """The row of any resource type (read through the registry), or NotFound naming ``field``."""
    return crud.get_row(session, call.node.resources.get(type_name), uuid, field)


def same_zone(a: Any, a_type: str, b: Any, b_type: str, field: str, code: str) -> None:
    """Refuse to relate two resources that live in different zones."""
    if a.zoneUuid != b.zoneUuid:
        raise InvalidArgument(
            f"{field}: {b_type} {b.name} ({b.uuid}) is in zone {b.zoneUuid} but"
            f" {a_type} {a.name} ({a.uuid}) is in zone {a.zoneUuid}; both must be in the same zone",
            code=code,
            field=field,
        )


def linked(session: Session, link: LinkSpec, left_uuid: str, right_uuid: str) -> bool:
    table = link.table
    return bool(
        session.scalar(
            select(func.count())
            .select_from(table)
            .where(getattr(table, link.left_column) == left_uuid)
            .where(getattr(table, link.right_column) == right_uuid)
        )
    )


def linked_uuids(
    session: Session, link: LinkSpec, column: str, where_column: str, uuid: str
) -> list[str]:
    table = link.table
    return list(
        session.scalars(
            select(getattr(table, column))
            .where(getattr(table, where_column) == uuid)
            .order_by(getattr(table, column))
        )
    )


def add_link(session: Session, link: LinkSpec, left: Any, right: Any, **extra: Any) -> None:
    """Insert the link row, or refuse (Conflict ``<LEFT>.ALREADY_ATTACHED``) if it exists."""
    if linked(session, link, left.uuid, right.uuid):
        raise Conflict(
            f"{_field(link.right)}: {link.left} {left.name} ({left.uuid}) is already attached to"
            f" {link.right} {right.name} ({right.uuid})",
            code=f"{upper_snake(link.left)}.ALREADY_ATTACHED",
            field=_field(link.right),
        )
    row = link.table(**{link.left_column: left.uuid, link.right_column: right.uuid, **extra})
    session.add(row)
    left.lastOpDate = utcnow()


def remove_link(session: Session, link: LinkSpec, left: Any, right: Any) -> None:
    """Delete the link row, or refuse (Conflict ``<LEFT>.NOT_ATTACHED``) if there is none."""
    table = link.table
    row = session.scalar(
        select(table)
        .where(getattr(table, link.left_column) == left.uuid)
        .where(getattr(table, link.right_column) == right.uuid)
    )
    if row is None:
        raise Conflict(
            f"{_field(link.right)}: {link.left} {left.name} ({left.uuid}) is not attached to"
            f" {link.right} {right.name} ({right.uuid})",
            code=f"{upper_snake(link.left)}.NOT_ATTACHED",
            field=_field(link.right),
        )
    session.delete(row)
    left.lastOpDate = utcnow()


async def publish_link(
    call: Call, link: LinkSpec, event: str, left_uuid: str, right_uuid: str
) -> None:
    """``/<left cli>/attached`` or ``/<left cli>/detached`` with both UUIDs."""
    rt = call.node.resources.get(link.left)
    await call.publish(
        f"/{rt.cli}/{event}",
        {
            "resourceType": link.left,
            link.left_column: left_uuid,
            link.right_column: right_uuid,
        },
    )


def check_rename(
    call: Call, type_name: str, uuid: str, name: str | None, scope: str | None = None
) -> None:
    """Before an update: a new name must stay unique (within the row's ``scope`` column)."""
    if name is None:
        return
    rt = call.node.resources.get(type_name)
    with call.tx() as s:
        row = crud.get_row(s, rt, uuid)
        if row.name == name:
            return
        crud.unique_name(s, rt, name, {scope: getattr(row, scope)} if scope else None)


def check_capacities(total: int, available: int) -> None:
    """Storage capacities are bytes: non-negative, and never more free than there is."""
    if total < 0:
        raise InvalidArgument(
            f"totalCapacity must not be negative, got {total}",
            code="STORAGE.INVALID_CAPACITY",
            field="totalCapacity",
        )
    if available < 0:
        raise InvalidArgument(
            f"availableCapacity must not be negative, got {available}",
            code="STORAGE.INVALID_CAPACITY",
            field="availableCapacity",
        )
    if available > total:
        raise InvalidArgument(
            f"availableCapacity ({available}) must not exceed totalCapacity ({total})",
            code="STORAGE.INVALID_CAPACITY",
            field="availableCapacity",
        )


def _field(type_name: str) -> str:
    return type_name[0].lower() + type_name[1:] + "Uuid"
