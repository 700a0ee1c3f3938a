"""Primary-storage capacity: allocation for volumes, release, and its invariant.

Reservation is one conditional ``UPDATE ... WHERE total x ratio - used >= size`` so two nodes
never both take the last bytes. Volumes (read through the registry) are what is placed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from zmn.api.errors import OperationFailed
from zmn.core.consistency import Violation
from zmn.core.service import Call, handler
from zmn.services.primary_storage.api import AllocatePrimaryStorage, ReleasePrimaryStorageCapacity
from zmn.services.primary_storage.models import PrimaryStorageClusterRefVO, PrimaryStorageVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


def _room(size: int, ratio: float) -> Any:
    ps = PrimaryStorageVO
    return ps.totalCapacity * ratio - (ps.totalCapacity - ps.availableCapacity) >= size


class CapacityHandlers:
    node: Node

    @handler(AllocatePrimaryStorage)
    async def allocate_primary_storage(
        self, msg: AllocatePrimaryStorage, call: Call
    ) -> dict[str, Any]:
        ratio = float(self.node.global_config.get("primaryStorage", "overProvisioning.ratio"))
        ps = PrimaryStorageVO
        stmt = select(ps).where(ps.state == "Enabled", ps.status == "Connected")
        if msg.zoneUuid:
            stmt = stmt.where(ps.zoneUuid == msg.zoneUuid)
        if msg.primaryStorageUuid:
            stmt = stmt.where(ps.uuid == msg.primaryStorageUuid)
        if msg.clusterUuid:
            stmt = stmt.where(
                ps.uuid.in_(
                    select(PrimaryStorageClusterRefVO.primaryStorageUuid).where(
                        PrimaryStorageClusterRefVO.clusterUuid == msg.clusterUuid
                    )
                )
            )
        if msg.avoidPrimaryStorageUuids:
            stmt = stmt.where(ps.uuid.not_in(msg.avoidPrimaryStorageUuids))
        rt = self.node.resources.get("PrimaryStorage")
        with call.tx() as s:
            rows = list(s.scalars(stmt.order_by(ps.availableCapacity.desc(), ps.uuid)))
            if not rows:
                raise OperationFailed(
                    "no enabled, connected primary storage is attached where the volume must go",
                    code="PRIMARY_STORAGE.ALLOCATION_FAILED",
                    filter="state",
                )
            for row in rows:
                done = s.execute(
                    update(ps)
                    .where(ps.uuid == row.uuid, _room(msg.size, ratio))
                    .values(availableCapacity=ps.availableCapacity - msg.size)
                    .execution_options(synchronize_session=False)
                )
                if getattr(done, "rowcount", 0) == 1:
                    s.refresh(row)
                    return {"primaryStorage": rt.inventories(s, [row])[0]}
            best = rows[0]
            raise OperationFailed(
                f"no primary storage has {msg.size} bytes free (the freest, {best.name}, has"
                f" {best.availableCapacity} of {best.totalCapacity})",
                code="PRIMARY_STORAGE.ALLOCATION_FAILED",
                filter="capacity",
                size=msg.size,
            )

    @handler(ReleasePrimaryStorageCapacity)
    async def release_primary_storage_capacity(
        self, msg: ReleasePrimaryStorageCapacity, call: Call
    ) -> dict[str, Any]:
        self.node.db_write(
            update(PrimaryStorageVO)
            .where(PrimaryStorageVO.uuid == msg.primaryStorageUuid)
            .values(availableCapacity=PrimaryStorageVO.availableCapacity + msg.size)
        )
        return {}


class PrimaryStorageCapacityConsistency:
    """Each primary storage's available capacity is its total minus its volumes' sizes."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def check_consistency(self, session: Session) -> list[Violation]:
        placed: dict[str, int] = {}
        rt = self.node.resources.types.get("Volume")
        if rt is not None:
            vol = rt.model
            rows = session.execute(
                select(vol.primaryStorageUuid, func.sum(vol.size))
                .where(vol.primaryStorageUuid.is_not(None))
                .group_by(vol.primaryStorageUuid)
            )
            placed = {str(ps): int(total or 0) for ps, total in rows}
        out: list[Violation] = []
        for ps in session.scalars(select(PrimaryStorageVO)):
            expected = ps.totalCapacity - placed.get(ps.uuid, 0)
            if ps.availableCapacity != expected:
                out.append(
                    Violation(
                        check="primary-storage-capacity",
                        resourceType="PrimaryStorage",
                        uuid=ps.uuid,
                        message=f"primary storage {ps.name}: available is {ps.availableCapacity}"
                        f" but total minus its volumes is {expected}",
                        expected=expected,
                        actual=ps.availableCapacity,
                    )
                )
        return out
