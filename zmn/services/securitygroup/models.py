from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin, Timestamp, utcnow


class SecurityGroupVO(ResourceMixin, Base):
    """A named set of firewall rules; NICs join it, and it may be attached to L3 networks."""

    __tablename__ = "security_group"
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)


class SecurityGroupRuleVO(Base):
    """One rule: traffic of a direction and protocol (and ports) from a CIDR or a remote group.

    Exactly one of ``allowedCidr`` and ``remoteSecurityGroupUuid`` is set. ICMP and ALL rules
    have no ports (both null).
    """

    __tablename__ = "security_group_rule"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    securityGroupUuid: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(16))
    startPort: Mapped[int | None] = mapped_column(Integer, default=None)
    endPort: Mapped[int | None] = mapped_column(Integer, default=None)
    allowedCidr: Mapped[str | None] = mapped_column(String(64), default=None)
    remoteSecurityGroupUuid: Mapped[str | None] = mapped_column(
        String(32), default=None, index=True
    )
    ipVersion: Mapped[int] = mapped_column(Integer, default=4)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    description: Mapped[str | None] = mapped_column(Text, default=None)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class VmNicSecurityGroupRefVO(Base):
    """A VM NIC in a security group: the group's rules apply to the NIC."""

    __tablename__ = "vm_nic_security_group_ref"
    vmNicUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    securityGroupUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class SecurityGroupL3NetworkRefVO(Base):
    """A security group attached to an L3 network: new NICs on the L3 join the group."""

    __tablename__ = "security_group_l3_network_ref"
    securityGroupUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    l3NetworkUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
