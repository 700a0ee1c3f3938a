from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin


class ClusterVO(ResourceMixin, Base):
    """A group of hosts of one hypervisor type that share storage and networks."""

    __tablename__ = "cluster"
    zoneUuid: Mapped[str] = mapped_column(String(32), index=True)
    hypervisorType: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    type: Mapped[str] = mapped_column(String(32), default="zstack")
