from __future__ import annotations

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin


class VipVO(ResourceMixin, Base):
    """An address taken from an L3 network (a UsedIp with usedFor=Vip) for a network service."""

    __tablename__ = "vip"
    l3NetworkUuid: Mapped[str] = mapped_column(String(32), index=True)
    ip: Mapped[str] = mapped_column(String(64))
    usedIpUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    netmask: Mapped[str | None] = mapped_column(String(64), default=None)
    gateway: Mapped[str | None] = mapped_column(String(64), default=None)
    useFor: Mapped[str | None] = mapped_column(String(32), default=None)


class EipVO(ResourceMixin, Base):
    """A VIP mapped onto a VM NIC (or not yet, when ``vmNicUuid`` is null).

    A VIP serves one EIP at most: the unique constraint holds that across nodes too.
    """

    __tablename__ = "eip"
    __table_args__ = (UniqueConstraint("vipUuid"),)
    vipUuid: Mapped[str] = mapped_column(String(32), index=True)
    vmNicUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    vipIp: Mapped[str] = mapped_column(String(64))
    guestIp: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
