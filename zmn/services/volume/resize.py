"""``ResizeRootVolume`` / ``ResizeDataVolume``: a volume grows, online when its VM runs.

In the VM's queue when the volume is attached: the VM must allow it (Running, Paused or
Stopped); the extra bytes are reserved on the volume's primary storage first (a full storage
refuses here, before anything is touched); then the bytes are grown where they are:

* the VM runs (or is paused): its hypervisor (``HypervisorOp`` ``resizeVolume``; on KVM
  libvirt's ``blockResize``, so the guest sees the bigger disk at once);
* otherwise the primary storage's :class:`VolumeResizeStorage` extension when its type
  registered one (KVM: ``qemu-img resize`` by the agent of the host holding the file);
  without one (simulator storage) the size is bookkeeping.

Only then does the volume row take the new size. A failed resize gives the reservation back
and leaves the row as it was. A volume not on a primary storage yet (``NotInstantiated``)
just records its new size: it is made at that size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import update

from zmn.api.errors import InvalidArgument
from zmn.core.service import Call, handler, send
from zmn.services.volume.api import ResizeDataVolume, ResizeRootVolume
from zmn.services.volume.models import VolumeVO
from zmn.services.volume.store import storage_for, volume_inventory

if TYPE_CHECKING:
    from zmn.core.node import Node


@runtime_checkable
class VolumeResizeStorage(Protocol):
    """Growing a volume no running domain holds, for one primary storage type (registered by
    a hypervisor plugin). Returns False when the volume is not its to handle."""

    primary_storage_type: str

    async def resize_volume(
        self, volume: Mapping[str, Any], size: int, vm_uuid: str | None
    ) -> bool: ...


class ResizeHandlers:
    node: Node

    @handler(ResizeRootVolume)
    async def resize_root_volume(self, msg: ResizeRootVolume, call: Call) -> dict[str, Any]:
        return await self._resize(call, msg.volumeUuid, msg.size, "Root")

    @handler(ResizeDataVolume)
    async def resize_data_volume(self, msg: ResizeDataVolume, call: Call) -> dict[str, Any]:
        return await self._resize(call, msg.volumeUuid, msg.size, "Data")

    async def _resize(self, call: Call, uuid: str, size: int, kind: str) -> dict[str, Any]:
        vol = volume_inventory(call, uuid)
        if vol["type"] != kind:
            other = "ResizeRootVolume" if vol["type"] == "Root" else "ResizeDataVolume"
            raise InvalidArgument(
                f"volumeUuid: volume {vol['name']} is a {vol['type']} volume; use {other}",
                code="VOLUME.WRONG_TYPE",
                field="volumeUuid",
            )
        async with self.node.queues.vm(vol["vmInstanceUuid"], "ResizeVolume"):
            vol = volume_inventory(call, uuid)
            have = int(vol["size"] or 0)
            if size < have:
                raise InvalidArgument(
                    f"size: volume {vol['name']} is {have} bytes; a volume only grows (give a"
                    f" size of at least {have})",
                    code="VOLUME.SHRINK",
                    field="size",
                )
            if size == have:
                return {"inventory": vol}
            await self._grow(call, vol, size)
            with call.tx() as s:
                s.execute(update(VolumeVO).where(VolumeVO.uuid == uuid).values(size=size))
            inv = volume_inventory(call, uuid)
        await call.publish("/volume/resized", {"volumeUuid": uuid, "size": size, "inventory": inv})
        return {"inventory": inv}

    async def _grow(self, call: Call, vol: dict[str, Any], size: int) -> None:
        vm_uuid = vol["vmInstanceUuid"]
        vm = None
        if vm_uuid:
            vm = (
                await send(
                    call, "CheckVmOperation", vmInstanceUuid=vm_uuid, operation="resizeVolume"
                )
            )["inventory"]
        ps = vol["primaryStorageUuid"]
        if vol["status"] != "Ready" or not ps:
            return  # made at its new size when first used
        extra = size - int(vol["size"] or 0)
        await send(call, "AllocatePrimaryStorage", size=extra, primaryStorageUuid=ps)
        try:
            if vm is not None and vm["state"] in ("Running", "Paused") and vm.get("hostUuid"):
                await send(
                    call,
                    "HypervisorOp",
                    hostUuid=vm["hostUuid"],
                    op="resizeVolume",
                    vm=vm,
                    args={"volume": vol, "size": size},
                )
            else:
                storage = storage_for(self.node, VolumeResizeStorage, vol)  # type: ignore[type-abstract]
                if storage is not None:
                    await storage.resize_volume(vol, size, vm_uuid)
        except BaseException:
            await send(call, "ReleasePrimaryStorageCapacity", primaryStorageUuid=ps, size=extra)
            raise
