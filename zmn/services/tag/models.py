"""System and user tags as two read-only resource types over the core ``tag`` table.

``Query<Type>`` needs one mapped class per resource type, and both kinds live in one table
(core :class:`~zmn.core.models.TagVO`, column ``type``). Each class here is mapped onto a
filtered ``SELECT`` of that table (SQLAlchemy's mapping against a subquery), so the query
compiler, counting and ``session.get`` see only that kind without knowing it, and no new
table or view is created (nothing for migrations). Writes always go through ``TagVO``.
"""

from __future__ import annotations

from sqlalchemy import select

from zmn.core.db import Base
from zmn.core.models import TagVO

_tag = TagVO.__table__


class SystemTagVO(Base):
    """Read-only: the rows of ``tag`` with type System."""

    __table__ = select(_tag).where(_tag.c.type == "System").subquery("system_tag")


class UserTagVO(Base):
    """Read-only: the rows of ``tag`` with type User."""

    __table__ = select(_tag).where(_tag.c.type == "User").subquery("user_tag")
