from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin, Timestamp, utcnow


class L2NetworkVO(ResourceMixin, Base):
    """A layer-2 broadcast domain on a physical interface of the hosts (with a VLAN or not)."""

    __tablename__ = "l2_network"
    zoneUuid: Mapped[str] = mapped_column(String(32), index=True)
    physicalInterface: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    vlan: Mapped[int | None] = mapped_column(Integer, default=None)


class L2NetworkClusterRefVO(Base):
    """An L2 network attached to a cluster: its hosts have the bridge."""

    __tablename__ = "l2_network_cluster_ref"
    l2NetworkUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    clusterUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class L3NetworkVO(ResourceMixin, Base):
    """An IP network on an L2 network; VMs get their NICs and addresses from it."""

    __tablename__ = "l3_network"
    l2NetworkUuid: Mapped[str] = mapped_column(String(32), index=True)
    zoneUuid: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(32), default="L3BasicNetwork")
    category: Mapped[str] = mapped_column(String(32), default="Private")
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    dnsDomain: Mapped[str | None] = mapped_column(String(255), default=None)
    system: Mapped[bool] = mapped_column(Boolean, default=False)
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)


class IpRangeVO(ResourceMixin, Base):
    """Addresses of an L3 network that VMs may be given (inclusive range)."""

    __tablename__ = "ip_range"
    l3NetworkUuid: Mapped[str] = mapped_column(String(32), index=True)
    startIp: Mapped[str] = mapped_column(String(64))
    endIp: Mapped[str] = mapped_column(String(64))
    netmask: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64))
    networkCidr: Mapped[str] = mapped_column(String(64))
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)


class UsedIpVO(Base):
    """An address of an L3 network given to a VM NIC or a VIP.

    ``UNIQUE(l3NetworkUuid, ip)`` makes a duplicate address impossible, even when two
    management nodes allocate at the same moment: the loser retries another address.
    """

    __tablename__ = "used_ip"
    __table_args__ = (UniqueConstraint("l3NetworkUuid", "ip"),)
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    l3NetworkUuid: Mapped[str] = mapped_column(String(32), index=True)
    ipRangeUuid: Mapped[str] = mapped_column(String(32), index=True)
    ip: Mapped[str] = mapped_column(String(64))
    ipInLong: Mapped[int] = mapped_column(BigInteger)
    netmask: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64))
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)
    usedFor: Mapped[str] = mapped_column(String(32), default="Vm")
    vmNicUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
