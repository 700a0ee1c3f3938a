"""Reads shared by the KVM host type's helpers: a VM start reads everything it needs (bridges,
network state, seed, ISO, storage roots) in one transaction instead of one each, through the
node's fast path (:mod:`zmn.core.fastsql`): Core statements built once, rows with the table's
columns as attributes. The helpers take either kind of connection, or an ORM session."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from zmn.core.models import TagVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.fastsql import AnyConnection
    from zmn.core.node import Node

    Reader = AnyConnection | Session


@contextmanager
def reading(node: Node, conn: Reader | None = None) -> Iterator[Reader]:
    """``conn`` when the caller holds one, else a fast-path transaction of its own."""
    if conn is not None:
        yield conn
        return
    with node.db.fast() as own:
        yield own


_BY_KEY: dict[Any, Any] = {}  # model -> its select by primary key, built once


def row_of(conn: Reader, model: Any, key: str) -> Any:
    """The row of ``model``'s table with that primary key (columns as attributes), or None."""
    stmt = _BY_KEY.get(model)
    if stmt is None:
        table = model.__table__
        (column,) = table.primary_key.columns
        stmt = _BY_KEY[model] = select(table).where(column == bindparam("key"))
    return conn.execute(stmt, {"key": key}).first()


_SYSTEM_TAGS = select(TagVO.tag).where(
    TagVO.resourceUuid == bindparam("uuid"), TagVO.type == "System"
)


def system_tags(conn: Reader, resource_uuid: str) -> list[str]:
    return list(conn.scalars(_SYSTEM_TAGS, {"uuid": resource_uuid}))


def tag_value(tags: Iterable[str], prefix: str) -> str | None:
    """The value of the first ``prefix::value`` tag (``prefix`` without the ``::``)."""
    head = prefix + "::"
    return next((t.split("::", 1)[1] for t in tags if t.startswith(head)), None)
