from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin, Timestamp, utcnow


class BackupStorageVO(ResourceMixin, Base):
    """Storage for images and backups; zone-independent, attached to zones. Capacities in bytes."""

    __tablename__ = "backup_storage"
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Connected")
    totalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableCapacity: Mapped[int] = mapped_column(BigInteger, default=0)


class BackupStorageZoneRefVO(Base):
    """A backup storage attached to a zone: the zone's hosts can take images from it."""

    __tablename__ = "backup_storage_zone_ref"
    backupStorageUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    zoneUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
