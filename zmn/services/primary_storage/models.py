from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, ResourceMixin, Timestamp, utcnow


class PrimaryStorageVO(ResourceMixin, Base):
    """Storage for VM volumes, attached to clusters of its zone. Capacities in bytes."""

    __tablename__ = "primary_storage"
    zoneUuid: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    mountPath: Mapped[str | None] = mapped_column(Text, default=None)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Connected")
    totalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availableCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    totalPhysicalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availablePhysicalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)


class PrimaryStorageClusterRefVO(Base):
    """A primary storage attached to a cluster: the cluster's hosts can use it."""

    __tablename__ = "primary_storage_cluster_ref"
    primaryStorageUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    clusterUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class LocalStorageHostRefVO(Base):
    """What one host's agent last reported for a local primary storage's directory."""

    __tablename__ = "local_storage_host_ref"
    primaryStorageUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    hostUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    totalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    availablePhysicalCapacity: Mapped[int] = mapped_column(BigInteger, default=0)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class LocalStorageVolumeRefVO(Base):
    """The host whose local directory holds a volume (made there; it never moves)."""

    __tablename__ = "local_storage_volume_ref"
    volumeUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    primaryStorageUuid: Mapped[str] = mapped_column(String(32), index=True)
    hostUuid: Mapped[str] = mapped_column(String(32), index=True)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class SharedStorageMarkerVO(Base):
    """The identity a shared primary storage's marker file carries (``<dir>/zstack_smp_id``):
    the storage UUID and this nonce, made by the node, written by the first host that sees the
    directory; a host that reads anything else is not looking at the same directory."""

    __tablename__ = "shared_storage_marker"
    primaryStorageUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    written: Mapped[bool] = mapped_column(Boolean, default=False)


class SharedStorageHostRefVO(Base):
    """Whether one host sees a shared primary storage (SharedMountPoint, NFS): ``Connected``
    when its agent read the storage's marker there, else ``Disconnected`` with the reason."""

    __tablename__ = "shared_storage_host_ref"
    primaryStorageUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    hostUuid: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    status: Mapped[str] = mapped_column(String(32), default="Disconnected")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
