"""ISO images in a VM's CD-ROM drive: ``AttachIsoToVmInstance`` / ``DetachIsoFromVmInstance``.

The drive holds one ISO, recorded as the VM's system tag ``iso::{imageUuid}`` (a VM created
from an ISO gets it at creation and boots from the CD-ROM first). A stopped VM only changes
the record (the hypervisor sees it at the next start); a running one changes the medium on
its host first (``HypervisorOp`` ``attachIso`` / ``detachIso``, KVM: the ISO fetched into the
host's image cache, then inserted live), and the record changes only when that worked.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from zmn.api.errors import Conflict, InvalidArgument, InvalidState
from zmn.core import links
from zmn.core.db import new_uuid
from zmn.core.models import TagVO
from zmn.core.service import Call, handler
from zmn.core.tags import TagPattern
from zmn.services.vm.api import AttachIsoToVmInstance, DetachIsoFromVmInstance
from zmn.services.vm.common import VmBase, hypervisor, load_vm

ISO = TagPattern("iso::{imageUuid}", "VmInstance", "the ISO image in the VM's CD-ROM drive")
ERRORS = {
    "VM_INSTANCE.NOT_AN_ISO": "the image given as isoUuid is not an ISO",
    "VM_INSTANCE.ISO_ATTACHED": "the VM's CD-ROM drive holds another ISO",
    "VM_INSTANCE.NO_ISO": "the VM's CD-ROM drive holds no ISO (or not that one)",
}
_STATES = ("Running", "Stopped")


def iso_of(call: Call, vm_uuid: str) -> str | None:
    """The UUID of the ISO in the VM's drive, if any."""
    with call.tx() as s:
        tag = s.scalar(
            select(TagVO.tag).where(
                TagVO.resourceUuid == vm_uuid, TagVO.type == "System", TagVO.tag.like("iso::%")
            )
        )
    return None if tag is None else str(tag).split("::", 1)[1]


def _vm(call: Call, uuid: str) -> dict[str, Any]:
    vm = load_vm(call, uuid, "vmInstanceUuid")
    if vm["state"] not in _STATES:
        raise InvalidState(
            f"VM {vm['name']} is {vm['state']}; ISOs change on Running or Stopped VMs",
            code="VM_INSTANCE.INVALID_STATE",
            field="vmInstanceUuid",
        )
    return vm


def _iso(call: Call, uuid: str) -> dict[str, Any]:
    with call.tx() as s:
        row = links.row_of(call, s, "Image", uuid, "isoUuid")
        rt = call.node.resources.get("Image")
        inv: dict[str, Any] = rt.inventories(s, [row])[0]
    if inv["mediaType"] != "ISO" or inv["status"] != "Ready":
        raise InvalidArgument(
            f"isoUuid: image {inv['name']} is a {inv['mediaType']} ({inv['status']}); give a"
            " Ready image of mediaType ISO",
            code="VM_INSTANCE.NOT_AN_ISO",
            field="isoUuid",
        )
    return inv


class IsoHandlers(VmBase):
    @handler(AttachIsoToVmInstance)
    async def attach_iso(self, msg: AttachIsoToVmInstance, call: Call) -> dict[str, Any]:
        uuid = msg.vmInstanceUuid
        async with self.vm_slot(uuid, "AttachIsoToVmInstance"):
            vm = _vm(call, uuid)
            iso = _iso(call, msg.isoUuid)
            current = iso_of(call, vm["uuid"])
            if current == iso["uuid"]:
                return {"inventory": vm}
            if current is not None:
                raise Conflict(
                    f"isoUuid: VM {vm['name']} has ISO {current} in its drive; detach it first",
                    code="VM_INSTANCE.ISO_ATTACHED",
                    field="isoUuid",
                )
            if vm["state"] == "Running":
                await hypervisor(call, vm["hostUuid"], "attachIso", vm, iso=iso)
            with call.tx() as s:
                s.add(TagVO(uuid=new_uuid(), resourceUuid=vm["uuid"], resourceType="VmInstance",
                            type="System", tag=ISO.make(imageUuid=iso["uuid"])))  # fmt: skip
            return {"inventory": load_vm(call, vm["uuid"])}

    @handler(DetachIsoFromVmInstance)
    async def detach_iso(self, msg: DetachIsoFromVmInstance, call: Call) -> dict[str, Any]:
        uuid = msg.vmInstanceUuid
        async with self.vm_slot(uuid, "DetachIsoFromVmInstance"):
            vm = _vm(call, uuid)
            current = iso_of(call, vm["uuid"])
            wanted = None if msg.isoUuid is None else _iso(call, msg.isoUuid)["uuid"]
            if current is None or (wanted is not None and wanted != current):
                raise InvalidArgument(
                    f"isoUuid: VM {vm['name']} has {current or 'no ISO'} in its drive",
                    code="VM_INSTANCE.NO_ISO",
                    field="isoUuid",
                )
            if vm["state"] == "Running":
                await hypervisor(call, vm["hostUuid"], "detachIso", vm)
            with call.tx() as s:
                s.execute(delete(TagVO).where(TagVO.resourceUuid == vm["uuid"],
                                              TagVO.tag == ISO.make(imageUuid=current)))  # fmt: skip
            return {"inventory": load_vm(call, vm["uuid"])}
