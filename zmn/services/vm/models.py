from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin, Timestamp, utcnow


class VmInstanceVO(ResourceMixin, Base):
    """A virtual machine. ``hostUuid`` is set while it holds capacity on a host (see
    PLACED states); a stopped VM keeps only ``lastHostUuid`` and ``clusterUuid``."""

    __tablename__ = "vm_instance"
    zoneUuid: Mapped[str] = mapped_column(String(32), index=True)
    clusterUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    hostUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    lastHostUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    imageUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    instanceOfferingUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    rootVolumeUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    defaultL3NetworkUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    type: Mapped[str] = mapped_column(String(32), default="UserVm")
    hypervisorType: Mapped[str | None] = mapped_column(String(32), default=None)
    platform: Mapped[str] = mapped_column(String(32), default="Linux")
    allocatorStrategy: Mapped[str | None] = mapped_column(String(64), default=None)
    cpuNum: Mapped[int] = mapped_column(Integer)
    cpuSpeed: Mapped[int] = mapped_column(Integer, default=0)
    memorySize: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(32), default="Created", index=True)


class VmNicVO(Base):
    """A VM's network interface on an L3 network, holding one address (a UsedIp)."""

    __tablename__ = "vm_nic"
    __table_args__ = (
        UniqueConstraint("vmInstanceUuid", "deviceId"),
        # covering index of the NIC-side count: VMs with a NIC on some L3 networks
        Index("ix_vm_nic_l3_vm", "l3NetworkUuid", "vmInstanceUuid"),
    )
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    vmInstanceUuid: Mapped[str] = mapped_column(String(32), index=True)
    l3NetworkUuid: Mapped[str] = mapped_column(String(32), index=True)
    usedIpUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    netmask: Mapped[str | None] = mapped_column(String(64), default=None)
    gateway: Mapped[str | None] = mapped_column(String(64), default=None)
    deviceId: Mapped[int] = mapped_column(Integer, default=0)
    internalName: Mapped[str] = mapped_column(String(64))
    hypervisorType: Mapped[str | None] = mapped_column(String(32), default=None)
    # when the guest took its DHCP lease for ``ip`` since the VM last started (None: not yet)
    leaseDate: Mapped[dt.datetime | None] = mapped_column(Timestamp, default=None)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
