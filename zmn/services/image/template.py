"""``CreateRootVolumeTemplateFromRootVolume``: a stopped VM's root volume becomes an image.

Checked before anything is recorded: the volume is a root volume, its VM is Stopped (a
running VM's disk changes under the copy: refused with ``IMAGE.VM_NOT_STOPPED``), the backup
storages are usable (default: those holding the VM's image). The image is recorded as
Downloading (capacity reserved as for ``AddImage``); on image stores the hypervisor writes the
bytes (``ExportVolumeToImageStore``, KVM: the volume flattened by ``qemu-img convert`` on its
host, copied to the store over SFTP with its SHA-256); simulator backup storages record a
simulated copy. A failure removes the image and gives the capacity back.
"""

from __future__ import annotations

from typing import Any

from zmn.api.errors import InvalidArgument, InvalidState, OperationFailed
from zmn.core import crud, links
from zmn.core.db import new_uuid
from zmn.core.service import Call, handler
from zmn.services.image.api import CreateRootVolumeTemplateFromRootVolume
from zmn.services.image.models import ImageBackupStorageRefVO, ImageVO

ERRORS = {
    "IMAGE.NOT_ROOT_VOLUME": "a template is made from a VM's root volume",
    "IMAGE.VM_NOT_STOPPED": "the VM of the root volume must be Stopped",
    "IMAGE.NO_EXPORT": "no hypervisor service can copy the volume to an image store",
}


class TemplateHandlers:
    """Mixed into ``ImageService`` (``self`` is the service: record, ready, _real_stores)."""

    @handler(CreateRootVolumeTemplateFromRootVolume)
    async def create_template(
        self: Any, msg: CreateRootVolumeTemplateFromRootVolume, call: Call
    ) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Image", msg)
        if existing is not None:
            return {"inventory": existing}
        volume, image_uuid = _check_volume(call, msg.rootVolumeUuid)
        bs_uuids = list(dict.fromkeys(msg.backupStorageUuids)) or _holding(call, image_uuid)
        real = self._real_stores(call, bs_uuids)
        if real and "ExportVolumeToImageStore" not in call.node.apis.apis:
            raise OperationFailed(
                "no hypervisor service can copy a volume to an image store",
                code="IMAGE.NO_EXPORT",
            )
        uuid = msg.resourceUuid or new_uuid()
        reserve = int(volume.actualSize or 0) if real else int(volume.size)
        row = ImageVO(
            uuid=uuid,
            name=msg.name,
            url=f"volume://{volume.uuid}",
            format="qcow2",
            mediaType="RootVolumeTemplate",
            platform=msg.platform,
            guestOsType=msg.guestOsType,
            architecture="x86_64",
            system=msg.system,
            state="Enabled",
            status="Downloading",
            actualSize=reserve,
        )
        inv = await self.record(call, row, msg, bs_uuids, reserve)
        await call.progress(20, "copying the volume")
        size, actual, checksum = int(volume.size), reserve, None
        if real:
            try:
                for ref in inv["backupStorageRefs"]:
                    done = await call.call(
                        call.node.apis.get("ExportVolumeToImageStore")(
                            volumeUuid=volume.uuid,
                            backupStorageUuid=ref["backupStorageUuid"],
                            installPath=ref["installPath"],
                        )
                    )
                    size, actual = int(done["size"]), int(done["actualSize"])
                    checksum = str(done["checksum"])
            except BaseException:
                await crud.delete(call, "Image", uuid, cascade=True, cleanup=self._release)
                raise
            self._adjust(bs_uuids, actual - reserve)
        return {"inventory": await self.ready(call, uuid, size, actual, checksum)}


def _check_volume(call: Call, volume_uuid: str) -> tuple[Any, str | None]:
    """The root volume and its VM's image UUID, or the error saying why not."""
    with call.tx() as s:
        volume = links.row_of(call, s, "Volume", volume_uuid, "rootVolumeUuid")
        if volume.type != "Root" or not volume.vmInstanceUuid:
            raise InvalidArgument(
                f"rootVolumeUuid: volume {volume.name} is a {volume.type} volume; a template is"
                " made from a VM's root volume",
                code="IMAGE.NOT_ROOT_VOLUME",
                field="rootVolumeUuid",
            )
        vm = links.row_of(call, s, "VmInstance", volume.vmInstanceUuid, "rootVolumeUuid")
        if vm.state != "Stopped":
            raise InvalidState(
                f"rootVolumeUuid: VM {vm.name} is {vm.state}; stop it first (StopVmInstance),"
                " so its disk does not change while it is copied",
                code="IMAGE.VM_NOT_STOPPED",
                field="rootVolumeUuid",
                vmInstanceUuid=vm.uuid,
                state=vm.state,
            )
        return volume, volume.rootImageUuid or vm.imageUuid


def _holding(call: Call, image_uuid: str | None) -> list[str]:
    with call.tx() as s:
        rows = s.query(ImageBackupStorageRefVO.backupStorageUuid).filter(
            ImageBackupStorageRefVO.imageUuid == image_uuid,
            ImageBackupStorageRefVO.status == "Ready",
        )
        found = [str(r[0]) for r in rows]
    if not found:
        raise InvalidArgument(
            "backupStorageUuids: the VM's image is on no backup storage; name one",
            field="backupStorageUuids",
        )
    return found
