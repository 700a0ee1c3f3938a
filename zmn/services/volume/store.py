"""Volume rows and their primary-storage bytes: create, remove, and the VM-facing internals.

A volume's ``size`` is taken on its primary storage from the moment it has one until the row
goes; ``CheckConsistency`` (primary storage) holds the storage to exactly that.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select

from zmn.core import crud
from zmn.core.db import new_uuid, utcnow
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.service import Call, handler, send
from zmn.services.volume.api import CreateVmVolume, ExpungeVmVolumes, RemoveVolumes
from zmn.services.volume.models import VolumeSnapshotVO, VolumeVO

if TYPE_CHECKING:
    from zmn.core.node import Node

T = TypeVar("T")


def install_path(call: Call, ps_uuid: str, uuid: str, fmt: str, conn: Any = None) -> str:
    """Where the volume lives on its storage (read in ``conn`` when the caller has one)."""
    rt = call.node.resources.types.get("PrimaryStorage")
    url = ""
    if rt is not None:
        stmt, params = _ps_url_statement(rt.model), {"ps": ps_uuid}
        if conn is not None:
            url = conn.execute(stmt, params).scalar() or ""
        else:
            with call.node.db.fast() as own:  # a statement built once
                url = own.execute(stmt, params).scalar() or ""
    return f"{url.rstrip('/')}/volumes/{uuid}/{uuid}.{fmt}"


@functools.cache
def _ps_url_statement(model: Any) -> Any:
    # where the hosts see it: an NFS storage's url is HOST:/export, its mountPath the directory
    return select(func.coalesce(model.mountPath, model.url)).where(model.uuid == bindparam("ps"))


def volume_inventory(call: Call, uuid: str) -> dict[str, Any]:
    rt = call.node.resources.get("Volume")
    with call.tx() as s:
        return rt.inventories(s, [crud.get_row(s, rt, uuid, "volumeUuid")])[0]


def storage_for(node: Node, point: type[T], volume: Mapping[str, Any]) -> T | None:
    """The ``point`` extension (it has ``primary_storage_type``) registered for the type of
    the volume's primary storage; None when the volume has no storage or the type none."""
    rt = node.resources.types.get("PrimaryStorage")
    ps_uuid = volume.get("primaryStorageUuid")
    if rt is None or not ps_uuid:
        return None
    with node.db.tx() as s:
        ps = s.get(rt.model, ps_uuid)
        if ps is None:
            return None
        ps_type = str(ps.type)
    return node.extensions.first(point, primary_storage_type=ps_type)


def drop_rows(call: Call, uuids: list[str]) -> list[tuple[str | None, int]]:
    """Delete volumes, their snapshots, tags and owners; returns (storage, bytes) to give back."""
    freed: list[tuple[str | None, int]] = []
    with call.tx() as s:
        rows = list(s.scalars(select(VolumeVO).where(VolumeVO.uuid.in_(uuids))))
        snaps = list(
            s.scalars(select(VolumeSnapshotVO.uuid).where(VolumeSnapshotVO.volumeUuid.in_(uuids)))
        )
        gone = [*uuids, *snaps]
        s.execute(delete(TagVO).where(TagVO.resourceUuid.in_(gone)))
        s.execute(delete(AccountResourceRefVO).where(AccountResourceRefVO.resourceUuid.in_(gone)))
        s.execute(delete(VolumeSnapshotVO).where(VolumeSnapshotVO.volumeUuid.in_(uuids)))
        for row in rows:
            freed.append((row.primaryStorageUuid, row.size))
            s.delete(row)
    return freed


async def remove_volumes(call: Call, uuids: list[str], *, release: bool) -> None:
    for ps, size in drop_rows(call, uuids):
        if release and ps:
            await send(call, "ReleasePrimaryStorageCapacity", primaryStorageUuid=ps, size=size)


_INSERT_VOLUME = insert(cast(Table, VolumeVO.__table__))
_INSERT_OWNER = insert(cast(Table, AccountResourceRefVO.__table__))


class StoreHandlers:
    node: Node

    @handler(CreateVmVolume)
    async def create_vm_volume(self, msg: CreateVmVolume, call: Call) -> dict[str, Any]:
        """The volume row and its owner in one transaction of cached Core statements (every
        VM create passes here); the inventory is the row itself unless a hook adds to it."""
        uuid = new_uuid()
        now = utcnow()
        row: dict[str, Any] = {
            "uuid": uuid,
            "name": msg.name,
            "description": None,
            "primaryStorageUuid": msg.primaryStorageUuid,
            "vmInstanceUuid": msg.vmInstanceUuid,
            "diskOfferingUuid": msg.diskOfferingUuid,
            "rootImageUuid": msg.rootImageUuid,
            "installPath": None,
            "type": msg.type,
            "format": msg.format,
            "size": msg.size,
            "actualSize": 0,
            "deviceId": msg.deviceId,
            "state": "Enabled",
            "status": "Ready",
            "isShareable": False,
            "createDate": now,
            "lastOpDate": now,
        }
        rt = self.node.resources.get("Volume")
        with call.node.db.fast() as conn:  # one transaction: path, row, owner
            row["installPath"] = install_path(call, msg.primaryStorageUuid, uuid, msg.format, conn)
            conn.execute(_INSERT_VOLUME, row)
            if rt.owned:
                conn.execute(
                    _INSERT_OWNER,
                    {
                        "resourceUuid": uuid,
                        "resourceType": "Volume",
                        "accountUuid": call.principal.accountUuid,
                        "createDate": now,
                    },
                )
        if rt.inventory_hook is not None:
            inv = volume_inventory(call, uuid)
        else:
            inv = rt.inventory(SimpleNamespace(**row))
        await call.publish("/volume/created", {"resourceType": "Volume", "inventory": inv})
        return {"inventory": inv}

    @handler(RemoveVolumes)
    async def remove_volumes(self, msg: RemoveVolumes, call: Call) -> dict[str, Any]:
        await remove_volumes(call, msg.volumeUuids, release=msg.releaseCapacity)
        return {}

    @handler(ExpungeVmVolumes)
    async def expunge_vm_volumes(self, msg: ExpungeVmVolumes, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            rows = list(
                s.scalars(select(VolumeVO).where(VolumeVO.vmInstanceUuid == msg.vmInstanceUuid))
            )
            roots = [r.uuid for r in rows if r.type == "Root"]
            for r in rows:
                if r.type != "Root":
                    r.vmInstanceUuid = None
                    r.deviceId = None
        await remove_volumes(call, roots, release=True)
        return {}
