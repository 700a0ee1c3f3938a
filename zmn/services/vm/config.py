"""VM configuration handlers: update, instance offering (hot-added on a Running VM:
:mod:`zmn.services.vm.online`), L3 networks (NICs, hot-plugged on a Running VM), state checks
for other services (volumes), and NIC removal when an L3 network is deleted with cascade."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from zmn.api.errors import Conflict, InvalidArgument, InvalidState, not_found
from zmn.core import crud, links
from zmn.core.service import Call, handler
from zmn.services.vm import cloudinit
from zmn.services.vm.api import (
    AttachL3NetworkToVm,
    ChangeInstanceOffering,
    CheckVmOperation,
    DeleteVmNic,
    DetachL3NetworkFromVm,
    UpdateVmInstance,
)
from zmn.services.vm.common import VmBase, check_op, hypervisor, load_vm, quietly
from zmn.services.vm.ha import set_ha_level
from zmn.services.vm.models import VmNicVO
from zmn.services.vm.nics import create_nic, next_device_id, nic_inventory, remove_nic
from zmn.services.vm.online import grow_running


def cluster_reaches_l3(call: Call, cluster_uuid: str, l3_uuid: str) -> bool:
    """Whether the cluster is attached to the L2 network under ``l3_uuid``."""
    l3_model = call.node.resources.get("L3Network").model
    for link in call.node.resources.links:
        if link.left == "L2Network" and link.right == "Cluster":
            with call.tx() as s:
                l2 = s.scalar(select(l3_model.l2NetworkUuid).where(l3_model.uuid == l3_uuid))
                return l2 is not None and links.linked(s, link, l2, cluster_uuid)
    return False


class ConfigHandlers(VmBase):
    # ----------------------------------------------------------------- update

    @handler(UpdateVmInstance)
    async def update_vm(self, msg: UpdateVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "UpdateVmInstance"):
            vm = check_op(call, msg.uuid, "update")
            resize = msg.cpuNum is not None or msg.memorySize is not None
            online = resize and vm["state"] == "Running"
            if resize and vm["state"] != "Stopped" and not online:
                check_op(call, msg.uuid, "changeInstanceOffering")
            if msg.userData is not None or msg.sshKeys is not None:
                if vm["state"] != "Stopped":
                    raise InvalidState(
                        f"VM {vm['name']} is {vm['state']}: userData and sshKeys change only"
                        " while it is Stopped (the seed is rebuilt at its next start)",
                        code="VM_INSTANCE.INVALID_STATE",
                        field="userData" if msg.userData is not None else "sshKeys",
                    )
                cloudinit.update(call, msg.uuid, msg.userData, msg.sshKeys)
            for field, value in (("cpuNum", msg.cpuNum), ("memorySize", msg.memorySize)):
                if value is not None and value <= 0:
                    raise InvalidArgument(f"{field} must be positive, got {value}", field=field)
            if msg.defaultL3NetworkUuid is not None and msg.defaultL3NetworkUuid not in {
                n["l3NetworkUuid"] for n in vm["vmNics"]
            }:
                raise InvalidArgument(
                    "defaultL3NetworkUuid: the VM has no NIC on that L3 network",
                    code="VM_INSTANCE.NOT_ON_L3",
                    field="defaultL3NetworkUuid",
                )
            changes: dict[str, Any] = {
                "name": msg.name,
                "description": msg.description,
                "defaultL3NetworkUuid": msg.defaultL3NetworkUuid,
                "cpuNum": msg.cpuNum,
                "memorySize": msg.memorySize,
            }
            if msg.cpuNum is not None or msg.memorySize is not None:
                changes["instanceOfferingUuid"] = None
            if msg.ha is not None:
                set_ha_level(call, msg.uuid, msg.ha)
            changed = {k: v for k, v in changes.items() if v is not None}
            if "instanceOfferingUuid" in changes:
                changed["instanceOfferingUuid"] = None
            if online:
                cpu = vm["cpuNum"] if msg.cpuNum is None else msg.cpuNum
                memory = vm["memorySize"] if msg.memorySize is None else msg.memorySize
                await grow_running(call, vm, cpu, memory)
            return await _update(call, msg.uuid, changed)

    @handler(ChangeInstanceOffering)
    async def change_instance_offering(
        self, msg: ChangeInstanceOffering, call: Call
    ) -> dict[str, Any]:
        uuid = msg.vmInstanceUuid
        async with self.vm_slot(uuid, "ChangeInstanceOffering"):
            vm = load_vm(call, uuid)
            if vm["state"] != "Running":  # a Running VM grows online (online.py)
                check_op(call, uuid, "changeInstanceOffering")
            with call.tx() as s:
                off = crud.get_row(
                    s,
                    self.node.resources.get("InstanceOffering"),
                    msg.instanceOfferingUuid,
                    "instanceOfferingUuid",
                )
                if off.state != "Enabled":
                    raise InvalidArgument(
                        f"instanceOfferingUuid: offering {off.name} is {off.state}",
                        code="VM_INSTANCE.DISABLED_RESOURCE",
                        field="instanceOfferingUuid",
                    )
                values = {
                    "instanceOfferingUuid": off.uuid,
                    "cpuNum": off.cpuNum,
                    "memorySize": off.memorySize,
                    "cpuSpeed": off.cpuSpeed,
                    "allocatorStrategy": off.allocatorStrategy,
                }
            if vm["state"] == "Running":
                await grow_running(call, vm, int(off.cpuNum), int(off.memorySize))
            return await _update(call, uuid, values)

    # ----------------------------------------------------------------- L3 networks

    @handler(AttachL3NetworkToVm)
    async def attach_l3(self, msg: AttachL3NetworkToVm, call: Call) -> dict[str, Any]:
        uuid = msg.vmInstanceUuid
        async with self.vm_slot(uuid, "AttachL3NetworkToVm"):
            vm = check_op(call, uuid, "attachL3")
            if any(n["l3NetworkUuid"] == msg.l3NetworkUuid for n in vm["vmNics"]):
                raise Conflict(
                    f"l3NetworkUuid: VM {vm['name']} already has a NIC on that L3 network",
                    code="VM_INSTANCE.L3_ALREADY_ATTACHED",
                    field="l3NetworkUuid",
                )
            with call.tx() as s:
                l3 = links.row_of(call, s, "L3Network", msg.l3NetworkUuid, "l3NetworkUuid")
                zone = l3.zoneUuid
            if zone != vm["zoneUuid"]:
                raise InvalidArgument(
                    f"l3NetworkUuid: L3 network {l3.name} is in zone {zone}, the VM in"
                    f" {vm['zoneUuid']}",
                    code="VM_INSTANCE.SCOPE_MISMATCH",
                    field="l3NetworkUuid",
                )
            if vm["clusterUuid"] and not cluster_reaches_l3(call, vm["clusterUuid"], l3.uuid):
                raise InvalidArgument(
                    f"l3NetworkUuid: the VM's cluster is not attached to the L2 network of L3"
                    f" network {l3.name}",
                    code="VM_INSTANCE.L3_UNREACHABLE",
                    field="l3NetworkUuid",
                )
            nic = await create_nic(
                call,
                uuid,
                l3.uuid,
                next_device_id(call, uuid),
                msg.staticIp,
                vm["hypervisorType"],
            )
            if vm["state"] == "Running" and vm["hostUuid"]:
                try:
                    await hypervisor(call, vm["hostUuid"], "attachNic", vm, nic=nic)
                except BaseException:
                    await remove_nic(call, nic, hooks=False)
                    raise
            inv = load_vm(call, uuid)
        await call.publish("/vm/nic/attached", {"vmInstanceUuid": uuid, "inventory": nic})
        return {"inventory": inv}

    @handler(DetachL3NetworkFromVm)
    async def detach_l3(self, msg: DetachL3NetworkFromVm, call: Call) -> dict[str, Any]:
        return {"inventory": await self._remove_nic(call, msg.vmNicUuid, check=True)}

    @handler(DeleteVmNic)
    async def delete_vm_nic(self, msg: DeleteVmNic, call: Call) -> dict[str, Any]:
        await self._remove_nic(call, msg.uuid, check=False)
        return {}

    async def _remove_nic(self, call: Call, nic_uuid: str, *, check: bool) -> dict[str, Any]:
        with call.tx() as s:
            row = s.get(VmNicVO, nic_uuid)
            if row is None:
                raise not_found("VmNic", nic_uuid, "vmNicUuid")
            vm_uuid = row.vmInstanceUuid
        async with self.vm_slot(vm_uuid, "DetachL3NetworkFromVm"):
            vm = check_op(call, vm_uuid, "detachL3") if check else load_vm(call, vm_uuid)
            nic = nic_inventory(call, nic_uuid)
            if vm["state"] in ("Running", "Paused") and vm["hostUuid"]:
                run = hypervisor(call, vm["hostUuid"], "detachNic", vm, nic=nic)
                if check:
                    await run
                else:
                    await quietly(f"detaching NIC {nic_uuid}", run)
            await remove_nic(call, nic)
            if vm["defaultL3NetworkUuid"] == nic["l3NetworkUuid"]:
                rest = [n["l3NetworkUuid"] for n in vm["vmNics"] if n["uuid"] != nic_uuid]
                await _update(call, vm_uuid, {"defaultL3NetworkUuid": rest[0] if rest else None})
            inv = load_vm(call, vm_uuid)
        await call.publish("/vm/nic/detached", {"vmInstanceUuid": vm_uuid, "inventory": nic})
        return inv

    # ----------------------------------------------------------------- for other services

    @handler(CheckVmOperation)
    async def check_vm_operation(self, msg: CheckVmOperation, call: Call) -> dict[str, Any]:
        return {"inventory": check_op(call, msg.vmInstanceUuid, msg.operation, "vmInstanceUuid")}


async def _update(call: Call, uuid: str, values: dict[str, Any]) -> dict[str, Any]:
    """Set fields (None included) and publish ``/vm/updated``."""
    rt = call.node.resources.get("VmInstance")
    with call.tx() as s:
        row = crud.get_row(s, rt, uuid)
        for key, value in values.items():
            setattr(row, key, value)
        s.flush()
        inv = rt.inventories(s, [row])[0]
    await call.publish(
        "/vm/updated", {"resourceType": "VmInstance", "inventory": inv, "changed": list(values)}
    )
    return {"inventory": inv}
