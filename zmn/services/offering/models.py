from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin


class InstanceOfferingVO(ResourceMixin, Base):
    """A VM size: vCPUs and memory (bytes), and how hosts are chosen for it."""

    __tablename__ = "instance_offering"
    cpuNum: Mapped[int] = mapped_column(Integer)
    cpuSpeed: Mapped[int] = mapped_column(Integer, default=0)
    memorySize: Mapped[int] = mapped_column(BigInteger)
    allocatorStrategy: Mapped[str] = mapped_column(
        String(64), default="DefaultHostAllocatorStrategy"
    )
    sortKey: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    type: Mapped[str] = mapped_column(String(32), default="UserVm")


class DiskOfferingVO(ResourceMixin, Base):
    """A data volume size in bytes, and how primary storage is chosen for it."""

    __tablename__ = "disk_offering"
    diskSize: Mapped[int] = mapped_column(BigInteger)
    allocatorStrategy: Mapped[str] = mapped_column(
        String(64), default="DefaultPrimaryStorageAllocationStrategy"
    )
    sortKey: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    type: Mapped[str] = mapped_column(String(32), default="zstack")
