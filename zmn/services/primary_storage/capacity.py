"""Primary-storage capacity: allocation for volumes, release, and its invariant.

Reservation is one conditional ``UPDATE ... WHERE total x ratio - used >= size`` so two nodes
never both take the last bytes. Volumes (read through the registry) are what is placed.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Float, Table, bindparam, func, select, update

from zmn.api.errors import OperationFailed
from zmn.core import reservations
from zmn.core.consistency import Violation
from zmn.core.service import Call, handler
from zmn.services.primary_storage.api import AllocatePrimaryStorage, ReleasePrimaryStorageCapacity
from zmn.services.primary_storage.models import PrimaryStorageClusterRefVO, PrimaryStorageVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


_PS = cast(Table, PrimaryStorageVO.__table__)
_REF = cast(Table, PrimaryStorageClusterRefVO.__table__)
# what AllocatePrimaryStorage answers about the storage it chose (callers read the UUID)
_REPLY = ("uuid", "name", "zoneUuid", "type", "url", "mountPath", "state", "status")


@functools.cache
def _candidates(zone: bool, ps: bool, cluster: bool, avoid: bool) -> Any:
    """Enabled, connected storage in scope, freest first (one statement per shape)."""
    c = _PS.c
    cols = [c[k] for k in _REPLY] + [c.availableCapacity, c.totalCapacity]
    stmt = select(*cols).where(c.state == "Enabled", c.status == "Connected")
    if zone:
        stmt = stmt.where(c.zoneUuid == bindparam("zone"))
    if ps:
        stmt = stmt.where(c.uuid == bindparam("ps"))
    if cluster:
        stmt = stmt.where(
            c.uuid.in_(
                select(_REF.c.primaryStorageUuid).where(_REF.c.clusterUuid == bindparam("cluster"))
            )
        )
    if avoid:
        stmt = stmt.where(c.uuid.not_in(bindparam("avoid", expanding=True)))
    return stmt.order_by(c.availableCapacity.desc(), c.uuid)


# one conditional UPDATE: two nodes never both take the last bytes
_RESERVE = (
    update(_PS)
    .where(
        _PS.c.uuid == bindparam("_uuid"),
        _PS.c.totalCapacity * bindparam("ratio", type_=Float())
        - (_PS.c.totalCapacity - _PS.c.availableCapacity)
        >= bindparam("size"),
    )
    .values(availableCapacity=_PS.c.availableCapacity - bindparam("size"))
)


class CapacityHandlers:
    node: Node

    @handler(AllocatePrimaryStorage)
    async def allocate_primary_storage(
        self, msg: AllocatePrimaryStorage, call: Call
    ) -> dict[str, Any]:
        """Core statements built once per shape of the request (every VM create passes here);
        the reply is the chosen storage's own columns, without the inventory hooks."""
        ratio = float(self.node.global_config.get("primaryStorage", "overProvisioning.ratio"))
        params: dict[str, Any] = {
            "zone": msg.zoneUuid,
            "ps": msg.primaryStorageUuid,
            "cluster": msg.clusterUuid,
            "avoid": msg.avoidPrimaryStorageUuids,
        }
        stmt = _candidates(
            bool(msg.zoneUuid),
            bool(msg.primaryStorageUuid),
            bool(msg.clusterUuid),
            bool(msg.avoidPrimaryStorageUuids),
        )
        with self.node.db.fast() as conn:
            rows = list(conn.execute(stmt, {k: v for k, v in params.items() if v}))
            if not rows:
                raise OperationFailed(
                    "no enabled, connected primary storage is attached where the volume must go",
                    code="PRIMARY_STORAGE.ALLOCATION_FAILED",
                    filter="state",
                )
            for row in rows:
                done = conn.execute(_RESERVE, {"_uuid": row.uuid, "size": msg.size, "ratio": ratio})
                if done.rowcount == 1:
                    if msg.reservationKey:  # the ledger row, in the UPDATE's transaction
                        reservations.add(
                            conn, msg.reservationKey, "PrimaryStorage", row.uuid, size=msg.size
                        )
                    return {"primaryStorage": {k: getattr(row, k) for k in _REPLY}}
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
        reservations.release(
            self.node,
            msg.reservationKey,
            PrimaryStorageVO,
            msg.primaryStorageUuid,
            {"availableCapacity": msg.size},
            {"availableCapacity": "size"},
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
