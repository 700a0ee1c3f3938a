from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin


class VolumeVO(ResourceMixin, Base):
    """A disk: a VM's root volume or a data volume. ``size`` bytes are taken on its primary
    storage from creation (or instantiation, for a data volume made without one) until it is
    deleted."""

    __tablename__ = "volume"
    primaryStorageUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    vmInstanceUuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    diskOfferingUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    rootImageUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    installPath: Mapped[str | None] = mapped_column(Text, default=None)
    type: Mapped[str] = mapped_column(String(32))  # Root | Data
    format: Mapped[str] = mapped_column(String(32), default="qcow2")
    size: Mapped[int] = mapped_column(BigInteger)
    actualSize: Mapped[int] = mapped_column(BigInteger, default=0)
    deviceId: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Creating")
    isShareable: Mapped[bool] = mapped_column(Boolean, default=False)


class VolumeSnapshotVO(ResourceMixin, Base):
    """A point-in-time copy of a volume, kept on the volume's primary storage."""

    __tablename__ = "volume_snapshot"
    volumeUuid: Mapped[str] = mapped_column(String(32), index=True)
    primaryStorageUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    primaryStorageInstallPath: Mapped[str | None] = mapped_column(Text, default=None)
    volumeType: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32), default="Hypervisor")
    format: Mapped[str] = mapped_column(String(32), default="qcow2")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Ready")
    parentUuid: Mapped[str | None] = mapped_column(String(32), default=None)
    latest: Mapped[bool] = mapped_column(Boolean, default=True)
