"""Data volumes: create, attach to a VM, detach, delete.

Attaching and detaching run in the VM's task queue (``vm:<uuid>``) so they never interleave
with the VM's own operations; the VM service answers whether its state allows them
(``CheckVmOperation``). Each is a flow chain (``volume-attach``, ``volume-detach``, see
:mod:`zmn.services.volume.flows`): persisted step by step, rolled back on failure, finished
or rolled back at the next start when the node died in the middle. A data volume made
without a primary storage is NotInstantiated and gets one reachable from the VM's cluster
at its first attach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zmn.api.errors import Conflict, InvalidArgument, NotFound
from zmn.core import crud, links
from zmn.core.db import new_uuid
from zmn.core.flow import FlowContext
from zmn.core.service import Call, handler, send
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
from zmn.services.volume.flows import ATTACH_CHAIN, DETACH_CHAIN
from zmn.services.volume.models import VolumeVO
from zmn.services.volume.store import install_path, remove_volumes, volume_inventory

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
        async with self.node.queues.vm(vm_uuid, "AttachDataVolumeToVm"):
            vm = (
                await send(
                    call, "CheckVmOperation", vmInstanceUuid=vm_uuid, operation="attachVolume"
                )
            )["inventory"]
            ctx = FlowContext(call, data={"volumeUuid": vol.uuid, "vmUuid": vm_uuid, "vm": vm})
            await self.node.flows.chain(ATTACH_CHAIN).run(ctx)
            inv = volume_inventory(call, vol.uuid)
        await call.publish("/volume/attached", {"vmInstanceUuid": vm_uuid, "inventory": inv})
        return {"inventory": inv}

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
        """Run the ``volume-detach`` chain in the VM's slot (``check``: the VM's state must
        allow it; otherwise any state will do, and a VM that is gone is fine)."""
        async with self.node.queues.vm(vm_uuid, "DetachDataVolumeFromVm"):
            op = "detachVolume" if check else "inspect"
            try:
                vm = (await send(call, "CheckVmOperation", vmInstanceUuid=vm_uuid, operation=op))[
                    "inventory"
                ]
            except NotFound:
                vm = None
            before = volume_inventory(call, uuid)
            if before["vmInstanceUuid"] == vm_uuid:
                data = {"volumeUuid": uuid, "vmUuid": vm_uuid, "vm": vm, "volume": before}
                await self.node.flows.chain(DETACH_CHAIN).run(FlowContext(call, data=data))
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
