"""The audit table: one row per mutating API call, written once and never changed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, Timestamp, utcnow


class AuditLogVO(Base):
    """Who called which mutating API, with which (redacted) arguments, when, and how it ended.

    No API updates or deletes these rows: the audit service only inserts, and no resource's
    delete touches them (references to accounts, users and jobs are historical pointers).
    """

    __tablename__ = "audit_log"
    # Insertion order is call-completion order; queries sort by it unless told otherwise.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    apiName: Mapped[str] = mapped_column(String(128), index=True)
    resourceType: Mapped[str | None] = mapped_column(String(64), default=None)
    resourceUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    args: Mapped[str] = mapped_column(Text, default="{}")
    accountUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    accountName: Mapped[str | None] = mapped_column(String(255), default=None)
    userUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    sessionId: Mapped[str | None] = mapped_column(String(16), default=None)
    peer: Mapped[str] = mapped_column(String(255), default="")
    result: Mapped[str] = mapped_column(String(128), index=True)
    jobUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    requestId: Mapped[str | None] = mapped_column(String(64), default=None)
    durationMs: Mapped[float] = mapped_column(Float, default=0.0)
    managementNodeUuid: Mapped[str] = mapped_column(String(32))


Index("ix_audit_log_account_create", AuditLogVO.accountUuid, AuditLogVO.createDate)
