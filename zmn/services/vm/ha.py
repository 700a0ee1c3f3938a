"""The VM's HA level: ZStack's system tag ``ha::NeverStop``.

``UpdateVmInstance ha=NeverStop`` sets it, ``ha=None`` removes it (it can also be given in
``systemTags`` at creation). What it does is the HA service's business
(``zmn/services/ha``): a NeverStop VM whose host dies is started on another host.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from zmn.core.db import new_uuid
from zmn.core.models import TagVO
from zmn.core.service import Call
from zmn.core.tags import TagPattern

LEVELS = ("NeverStop",)


def _level(tokens: dict[str, str]) -> str | None:
    if tokens["level"] in LEVELS:
        return None
    return (
        f"the HA level must be one of {', '.join(LEVELS)} (ha::NeverStop), got {tokens['level']!r}"
    )


HA = TagPattern("ha::{level}", "VmInstance", "HA level: NeverStop restarts the VM on another"
                " host when its host dies (shared storage only)", _level)  # fmt: skip


def ha_level(call: Call, vm_uuid: str) -> str | None:
    with call.tx() as s:
        tag = s.scalar(
            select(TagVO.tag).where(
                TagVO.resourceUuid == vm_uuid, TagVO.type == "System", TagVO.tag.like("ha::%")
            )
        )
    return None if tag is None else str(tag).split("::", 1)[1]


def set_ha_level(call: Call, vm_uuid: str, level: str) -> None:
    """``level`` NeverStop sets the tag, None removes it."""
    with call.tx() as s:
        s.execute(
            delete(TagVO).where(
                TagVO.resourceUuid == vm_uuid, TagVO.type == "System", TagVO.tag.like("ha::%")
            )
        )
        if level != "None":
            s.add(TagVO(uuid=new_uuid(), resourceUuid=vm_uuid, resourceType="VmInstance",
                        type="System", tag=HA.make(level=level)))  # fmt: skip
