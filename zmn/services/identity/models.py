"""Accounts, their users and login sessions.

Password hashes live in these rows but never leave the node: the resource types list
``passwordHash`` as a hidden field, so it is neither in inventories nor queryable.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin, Timestamp, utcnow


class AccountVO(ResourceMixin, Base):
    """A tenant (``Normal``) or an administrator (``SystemAdmin``)."""

    __tablename__ = "account"
    __table_args__ = (UniqueConstraint("name"),)
    type: Mapped[str] = mapped_column(String(32), default="Normal")
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    passwordHash: Mapped[str] = mapped_column(String(255))
    failedLogins: Mapped[int] = mapped_column(Integer, default=0)
    lockedUntil: Mapped[dt.datetime | None] = mapped_column(Timestamp, default=None)


class UserVO(ResourceMixin, Base):
    """A login of an account with its own password; it acts as its account."""

    __tablename__ = "account_user"
    __table_args__ = (UniqueConstraint("accountUuid", "name"),)
    accountUuid: Mapped[str] = mapped_column(String(32), index=True)
    passwordHash: Mapped[str] = mapped_column(String(255))
    failedLogins: Mapped[int] = mapped_column(Integer, default=0)
    lockedUntil: Mapped[dt.datetime | None] = mapped_column(Timestamp, default=None)


class SessionVO(Base):
    """A login session; its UUID is the SHA-256 digest of the bearer token the client sends
    with every request (the token itself is never stored)."""

    __tablename__ = "session"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    accountUuid: Mapped[str] = mapped_column(String(32), index=True)
    userUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    expiredDate: Mapped[dt.datetime] = mapped_column(Timestamp, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
