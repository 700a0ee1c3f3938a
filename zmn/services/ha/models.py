"""``vm_ha_status``: what the HA service did about a VM, and why a restart failed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, Timestamp, utcnow


class VmHaStatusVO(Base):
    """One row per VM the HA service restarted or tried to (``zcli vm-ha list``)."""

    __tablename__ = "vm_ha_status"
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)  # the VM's UUID
    name: Mapped[str] = mapped_column(String(255), default="")  # the VM's name
    deadHostUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    hostUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    state: Mapped[str] = mapped_column(String(32), default="Restarting")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lastError: Mapped[str | None] = mapped_column(Text, default=None)
    nextAttemptDate: Mapped[dt.datetime | None] = mapped_column(Timestamp, default=None)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
