from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin


class HostVO(ResourceMixin, Base):
    """A hypervisor host. Capacities are accounted here: CPUs in vCPUs, memory in bytes."""

    __tablename__ = "host"
    # the allocator's first fit: a zone's hosts in name order, read until enough have room
    __table_args__ = (Index("ix_host_zone_name", "zoneUuid", "name", "uuid"),)
    zoneUuid: Mapped[str] = mapped_column(String(32), index=True)
    clusterUuid: Mapped[str] = mapped_column(String(32), index=True)
    hypervisorType: Mapped[str] = mapped_column(String(32))
    managementIp: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Connecting")
    cpuNum: Mapped[int] = mapped_column(Integer, default=0)
    totalCpuCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableCpuCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    totalMemoryCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableMemoryCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
