from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin


class ZoneVO(ResourceMixin, Base):
    __tablename__ = "zone"
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
