"""Reads shared by the KVM host type's helpers: a VM start reads everything it needs (bridges,
network state, seed, ISO, storage roots) in one transaction instead of one each."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select

from zmn.core.models import TagVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


@contextmanager
def reading(node: Node, session: Session | None = None) -> Iterator[Session]:
    """``session`` when the caller holds one, else a transaction of its own."""
    if session is not None:
        yield session
        return
    with node.db.tx() as s:
        yield s


_SYSTEM_TAGS = select(TagVO.tag).where(
    TagVO.resourceUuid == bindparam("uuid"), TagVO.type == "System"
)


def system_tags(session: Session, resource_uuid: str) -> list[str]:
    return list(session.scalars(_SYSTEM_TAGS, {"uuid": resource_uuid}))


def tag_value(tags: Iterable[str], prefix: str) -> str | None:
    """The value of the first ``prefix::value`` tag (``prefix`` without the ``::``)."""
    head = prefix + "::"
    return next((t.split("::", 1)[1] for t in tags if t.startswith(head)), None)
