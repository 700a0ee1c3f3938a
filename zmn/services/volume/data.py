"""Data volumes: create, attach to a VM, detach, delete.

Attaching and detaching run in the VM's task queue (``vm:<uuid>``) so they never interleave
with the VM's own operations; the VM service answers whether its state allows them
(``CheckVmOperation``). A data volume made without a primary storage is NotInstantiated and
gets one reachable from the VM's cluster at its first attach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from zmn.api.errors import Conflict, InvalidArgument, NotFound
from zmn.core import crud, links
from zmn.core.db import new_uuid
from zmn.core.service import Call, handler
from zmn.core.state import StateMachine
from zmn.services.volume.api import (
    AttachDataVolumeToVm,
    ChangeVolumeState,
    CreateDataVolume,
    DeleteDataVolume,
    DeleteVolume,
    DetachDataVolumeFromVm,
    UpdateVolume,
)
from zmn.services.volume.models import VolumeVO
from zmn.services.volume.store import install_path, remove_volumes, send, volume_inventory

if TYPE_CHECKING:
    from zmn.core.node import Node

VOLUME_STATE = StateMachine(
    "Volume",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
    allowed={"attach": {"Enabled"}},
)


def _data_volume(call: Call, uuid: str, field: str) -> VolumeVO:
    rt = call.node.resources.get("Volume")
    with call.tx() as s:
        row: VolumeVO = crud.get_row(s, rt, uuid, field)
    if row.type != "Data":
        raise InvalidArgument(
            f"{field}: volume {row.name} is a root volume; it goes with its VM",
            code="VOLUME.NOT_DATA",
            field=field,
        )
    return row


def _reachable(call: Call, ps_uuid: str, cluster_uuid: str) -> bool:
    for link in call.node.resources.links:
        if link.left == "PrimaryStorage" and link.right == "Cluster":
            with call.tx() as s:
                return links.linked(s, link, ps_uuid, cluster_uuid)
    return False


class DataVolumeHandlers:
    node: Node

    @handler(CreateDataVolume)
    async def create_data_volume(self, msg: CreateDataVolume, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Volume", msg)
        if existing is not None:
            return {"inventory": existing}
        size, offering = msg.diskSize, None
        if msg.diskOfferingUuid:
            with call.tx() as s:
                off = links.row_of(
                    call, s, "DiskOffering", msg.diskOfferingUuid, "diskOfferingUuid"
                )
                size, offering = int(off.diskSize), off.uuid
        if size is None or size <= 0:
            raise InvalidArgument(
                "diskOfferingUuid: give a disk offering or a positive diskSize",
                code="VOLUME.NO_SIZE",
                field="diskOfferingUuid",
            )
        row = VolumeVO(
            name=msg.name,
            diskOfferingUuid=offering,
            type="Data",
            format="qcow2",
            size=size,
            state="Enabled",
            status="NotInstantiated",
        )
        row.uuid = msg.resourceUuid or new_uuid()
        if msg.primaryStorageUuid:
            ps = (
                await send(
                    call,
                    "AllocatePrimaryStorage",
                    size=size,
                    primaryStorageUuid=msg.primaryStorageUuid,
                )
            )["primaryStorage"]
            row.primaryStorageUuid = ps["uuid"]
            row.installPath = install_path(call, ps["uuid"], row.uuid, row.format)
            row.status = "Ready"
        try:
            return await crud.create(call, "Volume", row, msg)
        except BaseException:
            if row.primaryStorageUuid:
                await send(
                    call,
                    "ReleasePrimaryStorageCapacity",
                    primaryStorageUuid=row.primaryStorageUuid,
                    size=size,
                )
            raise

    @handler(UpdateVolume)
    async def update_volume(self, msg: UpdateVolume, call: Call) -> dict[str, Any]:
        return await crud.update_fields(
            call, "Volume", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(ChangeVolumeState)
    async def change_volume_state(self, msg: ChangeVolumeState, call: Call) -> dict[str, Any]:
        return await crud.change_state(call, "Volume", msg.uuid, msg.stateEvent, VOLUME_STATE)

    # ----------------------------------------------------------------- attach, detach

    @handler(AttachDataVolumeToVm)
    async def attach_data_volume(self, msg: AttachDataVolumeToVm, call: Call) -> dict[str, Any]:
        vol = _data_volume(call, msg.volumeUuid, "volumeUuid")
        VOLUME_STATE.check(vol.uuid, vol.state, "attach")
        if vol.vmInstanceUuid:
            raise Conflict(
                f"volumeUuid: volume {vol.name} is attached to VM {vol.vmInstanceUuid}",
                code="VOLUME.ALREADY_ATTACHED",
                field="volumeUuid",
            )
        vm_uuid = msg.vmInstanceUuid
        async with self.node.queues.slot(f"vm:{vm_uuid}", 1, "AttachDataVolumeToVm"):
            vm = (
                await send(
                    call, "CheckVmOperation", vmInstanceUuid=vm_uuid, operation="attachVolume"
                )
            )["inventory"]
            instantiated = await self._instantiate(call, vol, vm)
            try:
                inv = await self._attach(call, vol.uuid, vm)
            except BaseException:
                await self._undo_instantiate(call, vol.uuid, instantiated)
                raise
        await call.publish("/volume/attached", {"vmInstanceUuid": vm_uuid, "inventory": inv})
        return {"inventory": inv}

    async def _instantiate(self, call: Call, vol: VolumeVO, vm: dict[str, Any]) -> bool:
        cluster = vm.get("clusterUuid")
        if vol.primaryStorageUuid:
            if cluster and not _reachable(call, vol.primaryStorageUuid, cluster):
                raise InvalidArgument(
                    f"volumeUuid: volume {vol.name} is on primary storage"
                    f" {vol.primaryStorageUuid}, which VM {vm['name']}'s cluster cannot reach",
                    code="VOLUME.UNREACHABLE",
                    field="volumeUuid",
                )
            return False
        scope = {"clusterUuid": cluster} if cluster else {"zoneUuid": vm["zoneUuid"]}
        ps = (await send(call, "AllocatePrimaryStorage", size=vol.size, **scope))["primaryStorage"]
        with call.tx() as s:
            row = s.get(VolumeVO, vol.uuid)
            assert row is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
            row.primaryStorageUuid = ps["uuid"]
            row.installPath = install_path(call, ps["uuid"], vol.uuid, vol.format)
            row.status = "Ready"
        return True

    async def _undo_instantiate(self, call: Call, uuid: str, instantiated: bool) -> None:
        if not instantiated:
            return
        with call.tx() as s:
            row = s.get(VolumeVO, uuid)
            assert row is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
            ps, size = row.primaryStorageUuid, row.size
            row.primaryStorageUuid = row.installPath = None
            row.status = "NotInstantiated"
        await send(call, "ReleasePrimaryStorageCapacity", primaryStorageUuid=ps, size=size)

    async def _attach(self, call: Call, uuid: str, vm: dict[str, Any]) -> dict[str, Any]:
        with call.tx() as s:
            top = s.scalar(
                select(func.max(VolumeVO.deviceId)).where(VolumeVO.vmInstanceUuid == vm["uuid"])
            )
            row = s.get(VolumeVO, uuid)
            assert row is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
            row.vmInstanceUuid = vm["uuid"]
            row.deviceId = 1 if top is None else int(top) + 1
        inv = volume_inventory(call, uuid)
        if vm["state"] in ("Running", "Paused") and vm.get("hostUuid"):
            try:
                await send(
                    call,
                    "HypervisorOp",
                    hostUuid=vm["hostUuid"],
                    op="attachVolume",
                    vm=vm,
                    args={"volume": inv},
                )
            except BaseException:
                self._clear(call, uuid)
                raise
        return inv

    def _clear(self, call: Call, uuid: str) -> None:
        with call.tx() as s:
            row = s.get(VolumeVO, uuid)
            if row is not None:
                row.vmInstanceUuid = None
                row.deviceId = None

    @handler(DetachDataVolumeFromVm)
    async def detach_data_volume(self, msg: DetachDataVolumeFromVm, call: Call) -> dict[str, Any]:
        vol = _data_volume(call, msg.uuid, "uuid")
        if not vol.vmInstanceUuid:
            raise Conflict(
                f"uuid: volume {vol.name} is not attached to a VM",
                code="VOLUME.NOT_ATTACHED",
                field="uuid",
            )
        inv = await self._detach(call, vol.uuid, vol.vmInstanceUuid, check=True)
        return {"inventory": inv}

    async def _detach(self, call: Call, uuid: str, vm_uuid: str, *, check: bool) -> dict[str, Any]:
        async with self.node.queues.slot(f"vm:{vm_uuid}", 1, "DetachDataVolumeFromVm"):
            op = "detachVolume" if check else "inspect"  # inspect: any state will do
            try:
                vm = (await send(call, "CheckVmOperation", vmInstanceUuid=vm_uuid, operation=op))[
                    "inventory"
                ]
            except NotFound:
                vm = None
            before = volume_inventory(call, uuid)
            if vm and vm["state"] in ("Running", "Paused") and vm.get("hostUuid"):
                await send(
                    call,
                    "HypervisorOp",
                    hostUuid=vm["hostUuid"],
                    op="detachVolume",
                    vm=vm,
                    args={"volume": before},
                )
            self._clear(call, uuid)
            inv = volume_inventory(call, uuid)
        await call.publish("/volume/detached", {"vmInstanceUuid": vm_uuid, "inventory": inv})
        return inv

    # ----------------------------------------------------------------- delete

    @handler(DeleteDataVolume)
    async def delete_data_volume(self, msg: DeleteDataVolume, call: Call) -> dict[str, Any]:
        vol = _data_volume(call, msg.uuid, "uuid")
        return await self._delete(call, vol)

    async def _delete(self, call: Call, vol: VolumeVO) -> dict[str, Any]:
        if vol.vmInstanceUuid:
            await self._detach(call, vol.uuid, vol.vmInstanceUuid, check=True)
        inv = volume_inventory(call, vol.uuid)
        await remove_volumes(call, [vol.uuid], release=True)
        await call.publish("/volume/deleted", {"resourceType": "Volume", "inventory": inv})
        return {}

    @handler(DeleteVolume)
    async def delete_volume(self, msg: DeleteVolume, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("Volume")
        with call.tx() as s:
            vol: VolumeVO = crud.get_row(s, rt, msg.uuid)
        if vol.type == "Root" and vol.vmInstanceUuid:
            if "DeleteVmInstance" not in self.node.apis.apis:
                raise Conflict(
                    f"root volume {vol.name} belongs to VM {vol.vmInstanceUuid}; delete the VM",
                    code="VOLUME.ROOT_IN_USE",
                )
            await send(call, "DeleteVmInstance", uuid=vol.vmInstanceUuid)
            return {}
        if vol.vmInstanceUuid:
            await self._detach(call, vol.uuid, vol.vmInstanceUuid, check=False)
        await remove_volumes(call, [vol.uuid], release=True)
        return {}
