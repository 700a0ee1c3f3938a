"""Volume snapshots: take (in the VM's queue, on its host when it runs), revert (VM Stopped),
delete. On the simulator a snapshot is bookkeeping; it takes no primary-storage bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.api.errors import InvalidState
from zmn.core import crud
from zmn.core.db import new_uuid
from zmn.core.service import Call, handler
from zmn.services.volume.api import (
    CreateVolumeSnapshot,
    DeleteVolumeSnapshot,
    RevertVolumeFromSnapshot,
    UpdateVolumeSnapshot,
)
from zmn.services.volume.models import VolumeSnapshotVO, VolumeVO
from zmn.services.volume.store import send, volume_inventory

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from zmn.core.node import Node


class _NoSlot:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class SnapshotHandlers:
    node: Node

    def _vm_slot(self, vm_uuid: str | None, task: str) -> AbstractAsyncContextManager[None]:
        if vm_uuid is None:
            return _NoSlot()
        return self.node.queues.slot(f"vm:{vm_uuid}", 1, task)

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
        async with self._vm_slot(vol["vmInstanceUuid"], "CreateVolumeSnapshot"):
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
        async with self._vm_slot(vm_uuid, "RevertVolumeFromSnapshot"):
            if vm_uuid:
                await send(
                    call, "CheckVmOperation", vmInstanceUuid=vm_uuid, operation="revertVolume"
                )
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
