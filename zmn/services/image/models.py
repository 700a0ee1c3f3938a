from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin, Timestamp, utcnow


class ImageVO(ResourceMixin, Base):
    """A VM template or ISO. ``size`` is the virtual size, ``actualSize`` the bytes stored."""

    __tablename__ = "image"
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(32))
    mediaType: Mapped[str] = mapped_column(String(32))
    platform: Mapped[str] = mapped_column(String(32), default="Linux")
    guestOsType: Mapped[str | None] = mapped_column(String(255), default=None)
    architecture: Mapped[str] = mapped_column(String(32), default="x86_64")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    actualSize: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Downloading")
    system: Mapped[bool] = mapped_column(Boolean, default=False)
    type: Mapped[str] = mapped_column(String(32), default="zstack")
    # "sha256:<hex>" of the bytes stored, when a real backup storage downloaded it
    checksum: Mapped[str | None] = mapped_column(String(80), default=None)


class ImageBackupStorageRefVO(Base):
    """A copy of an image on a backup storage, and where it is there."""

    __tablename__ = "image_backup_storage_ref"
    imageUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    backupStorageUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    installPath: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="Downloading")
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
