"""Volume snapshots: take (in the VM's queue, on its host when it runs), revert (VM Stopped),
delete. On the simulator a snapshot is bookkeeping; it takes no primary-storage bytes.

Where the bytes are touched:

* a volume of a Running or Paused VM is snapshotted by the VM's hypervisor (``HypervisorOp``
  ``takeSnapshot``: QEMU holds the file);
* otherwise (VM Stopped, or the volume detached), and for every revert and delete, by the
  primary storage's :class:`VolumeSnapshotStorage` extension when its type registered one
  (KVM registers one for ``LocalStorage``: the agent of the host holding the file runs
  ``qemu-img snapshot``). Without one a snapshot stays bookkeeping.

The storage is asked before the database changes, so a refused or failed operation leaves
the snapshot rows as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select, update

from zmn.api.errors import InvalidState
from zmn.core import crud
from zmn.core.db import new_uuid
from zmn.core.service import Call, handler, send
from zmn.services.volume.api import (
    CreateVolumeSnapshot,
    DeleteVolumeSnapshot,
    RevertVolumeFromSnapshot,
    UpdateVolumeSnapshot,
)
from zmn.services.volume.models import VolumeSnapshotVO, VolumeVO
from zmn.services.volume.store import storage_for, volume_inventory

if TYPE_CHECKING:
    from zmn.core.node import Node


@runtime_checkable
class VolumeSnapshotStorage(Protocol):
    """Snapshots a primary storage type makes itself (registered by a hypervisor plugin).

    ``volume`` is the volume's inventory, ``vm_uuid`` the VM it is attached to (or None): the
    storage side must not touch a file a running domain holds. Each method returns False when
    the volume is not its to handle (e.g. its host is of another hypervisor type)."""

    primary_storage_type: str

    async def take_snapshot(
        self, volume: Mapping[str, Any], snapshot_uuid: str, vm_uuid: str | None
    ) -> bool: ...

    async def delete_snapshot(
        self, volume: Mapping[str, Any], snapshot_uuid: str, vm_uuid: str | None
    ) -> bool: ...

    async def revert_snapshot(
        self, volume: Mapping[str, Any], snapshot_uuid: str, vm_uuid: str | None
    ) -> bool: ...


class SnapshotHandlers:
    node: Node

    def _storage(self, volume: Mapping[str, Any]) -> VolumeSnapshotStorage | None:
        return storage_for(self.node, VolumeSnapshotStorage, volume)  # type: ignore[type-abstract]

    @handler(CreateVolumeSnapshot)
    async def create_volume_snapshot(self, msg: CreateVolumeSnapshot, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "VolumeSnapshot", msg)
        if existing is not None:
            return {"inventory": existing}
        vol = volume_inventory(call, msg.volumeUuid)
        if vol["status"] != "Ready":
            raise InvalidState(
                f"volumeUuid: volume {vol['name']} is {vol['status']}; only a Ready volume"
                " (one on a primary storage) has snapshots",
                code="VOLUME.INVALID_STATE",
                field="volumeUuid",
                state=vol["status"],
            )
        uuid = msg.resourceUuid or new_uuid()
        async with self.node.queues.vm(vol["vmInstanceUuid"], "CreateVolumeSnapshot"):
            on_hypervisor = False
            if vol["vmInstanceUuid"]:
                vm = (
                    await send(
                        call,
                        "CheckVmOperation",
                        vmInstanceUuid=vol["vmInstanceUuid"],
                        operation="takeSnapshot",
                    )
                )["inventory"]
                if vm["state"] in ("Running", "Paused") and vm.get("hostUuid"):
                    await send(
                        call,
                        "HypervisorOp",
                        hostUuid=vm["hostUuid"],
                        op="takeSnapshot",
                        vm=vm,
                        args={"volume": vol, "snapshotUuid": uuid},
                    )
                    on_hypervisor = True
            storage = None if on_hypervisor else self._storage(vol)
            if storage is not None:
                await storage.take_snapshot(vol, uuid, vol["vmInstanceUuid"])
            with call.tx() as s:
                parent = s.scalar(
                    select(VolumeSnapshotVO.uuid).where(
                        VolumeSnapshotVO.volumeUuid == vol["uuid"],
                        VolumeSnapshotVO.latest.is_(True),
                    )
                )
                s.execute(
                    update(VolumeSnapshotVO)
                    .where(VolumeSnapshotVO.volumeUuid == vol["uuid"])
                    .values(latest=False)
                )
            row = VolumeSnapshotVO(
                uuid=uuid,
                name=msg.name,
                volumeUuid=vol["uuid"],
                primaryStorageUuid=vol["primaryStorageUuid"],
                primaryStorageInstallPath=f"{vol['installPath']}.snapshots/{uuid}",
                volumeType=vol["type"],
                format=vol["format"],
                size=vol["actualSize"],
                parentUuid=parent,
                latest=True,
            )
            return await crud.create(call, "VolumeSnapshot", row, msg)

    @handler(RevertVolumeFromSnapshot)
    async def revert_volume_from_snapshot(
        self, msg: RevertVolumeFromSnapshot, call: Call
    ) -> dict[str, Any]:
        rt = self.node.resources.get("VolumeSnapshot")
        with call.tx() as s:
            snap = crud.get_row(s, rt, msg.uuid)
            vol = s.get(VolumeVO, snap.volumeUuid)
            vm_uuid = vol.vmInstanceUuid if vol is not None else None
        async with self.node.queues.vm(vm_uuid, "RevertVolumeFromSnapshot"):
            if vm_uuid:
                await send(
                    call, "CheckVmOperation", vmInstanceUuid=vm_uuid, operation="revertVolume"
                )
            vol_inv = volume_inventory(call, snap.volumeUuid)
            storage = self._storage(vol_inv)
            if storage is not None:
                await storage.revert_snapshot(vol_inv, snap.uuid, vm_uuid)
            with call.tx() as s:
                s.execute(
                    update(VolumeSnapshotVO)
                    .where(VolumeSnapshotVO.volumeUuid == snap.volumeUuid)
                    .values(latest=VolumeSnapshotVO.uuid == snap.uuid)
                )
            inv = volume_inventory(call, snap.volumeUuid)
        await call.publish(
            "/volume/reverted",
            {"volumeUuid": snap.volumeUuid, "snapshotUuid": snap.uuid, "inventory": inv},
        )
        return {"inventory": inv}

    @handler(DeleteVolumeSnapshot)
    async def delete_volume_snapshot(self, msg: DeleteVolumeSnapshot, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("VolumeSnapshot")
        with call.tx() as s:
            snap = crud.get_row(s, rt, msg.uuid)
            vol = s.get(VolumeVO, snap.volumeUuid)
            vm_uuid = vol.vmInstanceUuid if vol is not None else None
        async with self.node.queues.vm(vm_uuid, "DeleteVolumeSnapshot"):
            if vol is not None:
                vol_inv = volume_inventory(call, snap.volumeUuid)
                storage = self._storage(vol_inv)
                if storage is not None:
                    await storage.delete_snapshot(vol_inv, snap.uuid, vm_uuid)
            with call.tx() as s:
                s.execute(
                    update(VolumeSnapshotVO)
                    .where(VolumeSnapshotVO.parentUuid == snap.uuid)
                    .values(parentUuid=snap.parentUuid)
                )
            return await crud.delete(call, "VolumeSnapshot", msg.uuid, cascade=msg.cascade)

    @handler(UpdateVolumeSnapshot)
    async def update_volume_snapshot(self, msg: UpdateVolumeSnapshot, call: Call) -> dict[str, Any]:
        return await crud.update_fields(
            call, "VolumeSnapshot", msg.uuid, {"name": msg.name, "description": msg.description}
        )
