"""What the node keeps about a KVM host besides its ``host`` row.

Not a resource type (so never queryable): it holds credentials, the pinned SSH host key and
the agent's per-host secret. The row goes with its host (foreign key, ``ON DELETE CASCADE``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zmn.core.db import Base, Timestamp, utcnow
from zmn.services.host import models as _host_models  # noqa: F401  the "host" table the key names


class KvmHostVO(Base):
    __tablename__ = "kvm_host"
    uuid: Mapped[str] = mapped_column(
        String(32), ForeignKey("host.uuid", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(255))
    sshPort: Mapped[int] = mapped_column(Integer, default=22)
    password: Mapped[str | None] = mapped_column(String(1024), default=None)
    sshPrivateKey: Mapped[str | None] = mapped_column(String(1024), default=None)  # a path
    # "<key type> <base64>" as the host showed it on first contact; never replaced silently
    hostKey: Mapped[str | None] = mapped_column(Text, default=None)
    agentPort: Mapped[int] = mapped_column(Integer, default=7070)
    agentSecret: Mapped[str] = mapped_column(String(128))
    # what was deployed last: the agent wheel version and a digest of its config
    agentVersion: Mapped[str | None] = mapped_column(String(64), default=None)
    configDigest: Mapped[str | None] = mapped_column(String(64), default=None)
    # when the deploy play last ran to its end (migration 0002_ops)
    deployDate: Mapped[dt.datetime | None] = mapped_column(Timestamp, default=None)
    createDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    lastOpDate: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
