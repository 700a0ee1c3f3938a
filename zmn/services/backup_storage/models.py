from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
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


class ImageStoreBackupStorageVO(Base):
    """How the node reaches an image store backup storage's machine: SSH credentials and the
    host key pinned on first contact. Not a resource type (never queryable)."""

    __tablename__ = "image_store_backup_storage"
    uuid: Mapped[str] = mapped_column(
        String(32), ForeignKey("backup_storage.uuid", ondelete="CASCADE"), primary_key=True
    )
    hostname: Mapped[str] = mapped_column(String(255))
    sshPort: Mapped[int] = mapped_column(Integer, default=22)
    username: Mapped[str] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(String(1024), default=None)
    sshPrivateKey: Mapped[str | None] = mapped_column(String(1024), default=None)  # a path
    hostKey: Mapped[str | None] = mapped_column(Text, default=None)
