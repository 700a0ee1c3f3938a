"""Tables the core machinery owns: tags, ownership, global config, jobs, flows, nodes.

Services own their resource tables; these are the ones every service relies on.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, Timestamp, utcnow


class TagVO(Base):
    """A system or user tag attached to a resource."""

    __tablename__ = "tag"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    resourceUuid: Mapped[str] = mapped_column(String(32), index=True)
    resourceType: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))  # System | User
    tag: Mapped[str] = mapped_column(String(1024))
    inherent: Mapped[bool] = mapped_column(Boolean, default=False)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class AccountResourceRefVO(Base):
    """Which account owns a resource (for the resource types that accounts own)."""

    __tablename__ = "account_resource_ref"
    resourceUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    resourceType: Mapped[str] = mapped_column(String(64))
    accountUuid: Mapped[str] = mapped_column(String(32), index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class GlobalConfigVO(Base):
    """A typed, validated setting stored in the database."""

    __tablename__ = "global_config"
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    defaultValue: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class JobVO(Base):
    """A long-running API call: its state, progress, result or error."""

    __tablename__ = "job"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))  # the API name
    description: Mapped[str | None] = mapped_column(Text, default=None)
    state: Mapped[str] = mapped_column(String(16), index=True)
    args: Mapped[str] = mapped_column(Text, default="{}")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    progressText: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    resourceUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    accountUuid: Mapped[str] = mapped_column(String(32))
    managementNodeUuid: Mapped[str] = mapped_column(String(32))
    timeout: Mapped[int] = mapped_column(Integer, default=0)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class FlowRecordVO(Base):
    """Progress of one run of a flow chain, written before and after every step."""

    __tablename__ = "flow_record"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    chain: Mapped[str] = mapped_column(String(128))
    jobUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    currentFlow: Mapped[str | None] = mapped_column(String(128), default=None)
    doneFlows: Mapped[str] = mapped_column(Text, default="[]")
    data: Mapped[str] = mapped_column(Text, default="{}")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    managementNodeUuid: Mapped[str] = mapped_column(String(32))
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class ReservationVO(Base):
    """Capacity an operation in flight took, written in the transaction that takes it.

    Keyed by the step that took it (``<flow record>:<flow>``), so the undo gives back exactly
    what was taken, once, even when the node died before the step's record was durable
    (:mod:`zmn.core.reservations`). Dropped with the record's ``Done`` write."""

    __tablename__ = "capacity_reservation"
    uuid: Mapped[str] = mapped_column(String(192), primary_key=True)
    recordUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    targetUuid: Mapped[str] = mapped_column(String(32))
    cpuNum: Mapped[int] = mapped_column(BigInteger, default=0)
    memorySize: Mapped[int] = mapped_column(BigInteger, default=0)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class ManagementNodeVO(Base):
    """A management node of the cluster and its last heartbeat (database clock)."""

    __tablename__ = "management_node"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    hostName: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32))
    endpoints: Mapped[str] = mapped_column(Text, default="")
    heartbeat: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


Index("ix_tag_type_tag", TagVO.type, TagVO.tag, mysql_length={"tag": 255})  # InnoDB: 3072-byte keys
