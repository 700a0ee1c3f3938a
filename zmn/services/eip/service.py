"""VIPs and EIPs: a VIP holds an address of an L3 network (given by the network service's
internal ``AllocateIp``); an EIP maps that address onto a VM NIC of another L3 network.

The plugin reaches NICs and VMs only through the registry (their model classes) and the
VM lifecycle only through :mod:`zmn.core.vmhooks`, so it can be left out without touching
the VM service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from zmn.api.errors import Conflict, InvalidArgument, InvalidState, ZmnError
from zmn.core import crud, links
from zmn.core.consistency import ConsistencyCheck
from zmn.core.resource import Expansion, RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler, send
from zmn.core.vmhooks import VmBeforeExpunge, VmNicBeforeDelete
from zmn.services.eip.api import (
    AttachEip,
    CreateEip,
    CreateVip,
    DeleteEip,
    DeleteVip,
    DetachEip,
    UpdateEip,
    UpdateVip,
)
from zmn.services.eip.hooks import EipConsistency, EipVmHooks
from zmn.services.eip.models import EipVO, VipVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

# VM states in which a NIC can take an EIP: the VM is settled (not mid-operation, not gone).
EIP_VM_STATES = ("Paused", "Running", "Stopped")


class EipService(Service):
    name = "eip"
    summary = "virtual IPs and elastic IPs"
    requires = ("network",)
    error_codes = {
        "VIP.NOT_FOUND": "no VIP with that UUID or name",
        "VIP.DUPLICATE_NAME": "a VIP with that name exists",
        "VIP.HAS_DEPENDENTS": "an EIP uses the VIP; delete it first or pass cascade=true",
        "EIP.NOT_FOUND": "no EIP with that UUID or name",
        "EIP.DUPLICATE_NAME": "an EIP with that name exists",
        "EIP.VIP_IN_USE": "the VIP already serves another EIP",
        "EIP.SAME_L3": "the NIC is on the VIP's own L3 network",
        "EIP.ALREADY_ATTACHED": "the EIP is attached to a NIC; detach it first",
        "EIP.NOT_ATTACHED": "the EIP is attached to no NIC",
        "EIP.VM_INVALID_STATE": "the NIC's VM is in a state that cannot take an EIP",
        "EIP.NIC_UNAVAILABLE": "VM NICs are not available (the vm plugin is disabled)",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        hooks = EipVmHooks(node)
        node.extensions.add(VmBeforeExpunge, hooks)  # type: ignore[type-abstract]
        node.extensions.add(VmNicBeforeDelete, hooks)  # type: ignore[type-abstract]
        node.extensions.add(ConsistencyCheck, EipConsistency(node))  # type: ignore[type-abstract]

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Vip",
                VipVO,
                self.name,
                "vip",
                columns=["uuid", "name", "ip", "l3NetworkUuid", "useFor", "state"],
                refs={
                    "l3NetworkUuid": RefSpec("L3Network", on_delete="cascade"),
                    "usedIpUuid": RefSpec("UsedIp", on_delete="keep", reverse="vip"),
                },
                enums={"state": ["Enabled", "Disabled"], "useFor": ["Eip"]},
                docs={
                    "ip": "the virtual address",
                    "usedIpUuid": "the UsedIp row holding the address (usedFor=Vip)",
                    "useFor": "the network service using the VIP (Eip), or none",
                },
                owned=True,
                state_field="state",
                summary="an address of an L3 network reserved for a network service",
            )
        )
        registry.add(
            ResourceType(
                "Eip",
                EipVO,
                self.name,
                "eip",
                columns=["uuid", "name", "vipIp", "guestIp", "vmNicUuid", "state"],
                refs={
                    "vipUuid": RefSpec("Vip", on_delete="cascade"),
                    "vmNicUuid": RefSpec("VmNic", on_delete="detach", reverse="eip"),
                },
                enums={"state": ["Enabled", "Disabled"]},
                docs={
                    "vipIp": "the public address (the VIP's)",
                    "guestIp": "the NIC's address the VIP maps to, while attached",
                    "vmNicUuid": "the VM NIC the EIP is attached to, or none",
                },
                owned=True,
                state_field="state",
                summary="an elastic IP: a VIP mapped onto a VM NIC",
            )
        )
        registry.inject(
            "VmNic",
            Expansion("eip", "Eip", "uuid", "vmNicUuid", plugin=self.name, doc="EIPs on the NIC"),
        )

    # ----------------------------------------------------------------- VIP

    @handler(CreateVip)
    async def create_vip(self, msg: CreateVip, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Vip", msg)
        if existing is not None:
            return {"inventory": existing}
        rt = self.node.resources.get("Vip")
        with call.tx() as s:
            crud.unique_name(s, rt, msg.name)
        try:
            reply = await send(
                call,
                "AllocateIp",
                l3NetworkUuid=msg.l3NetworkUuid,
                ip=msg.requiredIp,
                usedFor="Vip",
            )
        except ZmnError as err:
            raise _rename_field(err, "ip", "requiredIp") from None
        used = reply["usedIp"]
        row = VipVO(
            name=msg.name,
            l3NetworkUuid=msg.l3NetworkUuid,
            ip=used["ip"],
            usedIpUuid=used["uuid"],
            netmask=used.get("netmask"),
            gateway=used.get("gateway"),
            state="Enabled",
            useFor=None,
        )
        try:
            return await crud.create(
                call, "Vip", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
            )
        except Exception:
            await send(call, "ReleaseIp", usedIpUuid=used["uuid"])
            raise

    @handler(UpdateVip)
    async def update_vip(self, msg: UpdateVip, call: Call) -> dict[str, Any]:
        links.check_rename(call, "Vip", msg.uuid, msg.name)
        return await crud.update_fields(
            call, "Vip", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(DeleteVip)
    async def delete_vip(self, msg: DeleteVip, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            used_ip = crud.get_row(s, self.node.resources.get("Vip"), msg.uuid).usedIpUuid
        await crud.delete(call, "Vip", msg.uuid, cascade=msg.cascade)
        if used_ip:
            await send(call, "ReleaseIp", usedIpUuid=used_ip)
        return {}

    # ----------------------------------------------------------------- EIP

    @handler(CreateEip)
    async def create_eip(self, msg: CreateEip, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Eip", msg)
        if existing is not None:
            return {"inventory": existing}
        rt = self.node.resources.get("Eip")
        try:
            with call.tx() as s:
                crud.unique_name(s, rt, msg.name)
                vip = self._free_vip(s, msg.vipUuid)
                guest_ip = self._nic_ip(s, vip, msg.vmNicUuid) if msg.vmNicUuid else None
                row = EipVO(
                    name=msg.name,
                    vipUuid=vip.uuid,
                    vmNicUuid=msg.vmNicUuid,
                    vipIp=vip.ip,
                    guestIp=guest_ip,
                    state="Enabled",
                )
                crud.insert(call, s, "Eip", row, msg)
                vip.useFor = "Eip"
                s.flush()
                inv = rt.inventories(s, [row])[0]
        except IntegrityError:
            raise _vip_in_use(msg.vipUuid) from None
        await call.publish("/eip/created", {"resourceType": "Eip", "inventory": inv})
        if msg.vmNicUuid:
            await self._publish_link(call, "attached", inv)
        return {"inventory": inv}

    @handler(UpdateEip)
    async def update_eip(self, msg: UpdateEip, call: Call) -> dict[str, Any]:
        links.check_rename(call, "Eip", msg.uuid, msg.name)
        return await crud.update_fields(
            call, "Eip", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(AttachEip)
    async def attach_eip(self, msg: AttachEip, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("Eip")
        with call.tx() as s:
            eip = crud.get_row(s, rt, msg.eipUuid, "eipUuid")
            if eip.vmNicUuid:
                raise Conflict(
                    f"eipUuid: EIP {eip.name} ({eip.uuid}) is attached to NIC {eip.vmNicUuid};"
                    " detach it first",
                    code="EIP.ALREADY_ATTACHED",
                    field="eipUuid",
                    vmNicUuid=eip.vmNicUuid,
                )
            vip = crud.get_row(s, self.node.resources.get("Vip"), eip.vipUuid, "vipUuid")
            eip.guestIp = self._nic_ip(s, vip, msg.vmNicUuid)
            eip.vmNicUuid = msg.vmNicUuid
            s.flush()
            inv = rt.inventories(s, [eip])[0]
        await self._publish_link(call, "attached", inv)
        return {"inventory": inv}

    @handler(DetachEip)
    async def detach_eip(self, msg: DetachEip, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("Eip")
        with call.tx() as s:
            eip = crud.get_row(s, rt, msg.eipUuid, "eipUuid")
            nic = eip.vmNicUuid
            if not nic:
                raise Conflict(
                    f"eipUuid: EIP {eip.name} ({eip.uuid}) is attached to no NIC",
                    code="EIP.NOT_ATTACHED",
                    field="eipUuid",
                )
            eip.vmNicUuid = None
            eip.guestIp = None
            s.flush()
            inv = rt.inventories(s, [eip])[0]
        await self._publish_link(call, "detached", {**inv, "vmNicUuid": nic})
        return {"inventory": inv}

    @handler(DeleteEip)
    async def delete_eip(self, msg: DeleteEip, call: Call) -> dict[str, Any]:
        def free_vip(s: Session, row: Any) -> None:
            vip = s.get(VipVO, row.vipUuid)
            if vip is not None:
                vip.useFor = None

        return await crud.delete(call, "Eip", msg.uuid, cascade=msg.cascade, cleanup=free_vip)

    # ----------------------------------------------------------------- checks

    def _free_vip(self, s: Session, vip_uuid: str) -> VipVO:
        vip: VipVO = crud.get_row(s, self.node.resources.get("Vip"), vip_uuid, "vipUuid")
        if vip.useFor or s.scalar(select(EipVO.uuid).where(EipVO.vipUuid == vip.uuid)):
            raise _vip_in_use(vip.uuid, vip.name)
        return vip

    def _nic_ip(self, s: Session, vip: VipVO, nic_uuid: str) -> str | None:
        """The address of a NIC that can take an EIP on ``vip``, or the error naming why not."""
        nic_rt = self.node.resources.types.get("VmNic")
        if nic_rt is None:
            raise InvalidArgument(
                "vmNicUuid: VM NICs are not available (the vm plugin is disabled)",
                code="EIP.NIC_UNAVAILABLE",
                field="vmNicUuid",
            )
        nic = crud.get_row(s, nic_rt, nic_uuid, "vmNicUuid")
        if nic.l3NetworkUuid == vip.l3NetworkUuid:
            raise InvalidArgument(
                f"vmNicUuid: NIC {nic.uuid} is on L3 network {nic.l3NetworkUuid}, the same as"
                f" VIP {vip.name} ({vip.ip}); an EIP maps a VIP onto a NIC of another L3 network",
                code="EIP.SAME_L3",
                field="vmNicUuid",
                l3NetworkUuid=nic.l3NetworkUuid,
            )
        taken = s.scalar(
            select(EipVO.uuid).where(EipVO.vmNicUuid == nic.uuid, EipVO.vipUuid == vip.uuid)
        )
        if taken:
            raise Conflict(
                f"vmNicUuid: NIC {nic.uuid} already has EIP {taken} on VIP {vip.name}",
                code="EIP.VIP_IN_USE",
                field="vmNicUuid",
            )
        vm_rt = self.node.resources.types.get("VmInstance")
        vm = s.get(vm_rt.model, nic.vmInstanceUuid) if vm_rt is not None else None
        if vm is not None and vm.state not in EIP_VM_STATES:
            raise InvalidState(
                f"vmNicUuid: cannot attach an EIP to a NIC of VM {vm.name} ({vm.uuid}) in state"
                f" {vm.state}; allowed in: {', '.join(EIP_VM_STATES)}",
                code="EIP.VM_INVALID_STATE",
                field="vmNicUuid",
                resourceType="VmInstance",
                uuid=vm.uuid,
                state=vm.state,
                allowedStates=list(EIP_VM_STATES),
            )
        ip = getattr(nic, "ip", None)
        return str(ip) if ip else None

    async def _publish_link(self, call: Call, event: str, inv: dict[str, Any]) -> None:
        await call.publish(
            f"/eip/{event}",
            {
                "resourceType": "Eip",
                "uuid": inv["uuid"],
                "vmNicUuid": inv["vmNicUuid"],
                "inventory": inv,
            },
        )


def _vip_in_use(vip_uuid: str, name: str = "") -> Conflict:
    label = f"{name} ({vip_uuid})" if name else vip_uuid
    return Conflict(
        f"vipUuid: VIP {label} already serves an EIP; a VIP serves one EIP",
        code="EIP.VIP_IN_USE",
        field="vipUuid",
    )


def _rename_field(err: ZmnError, old: str, new: str) -> ZmnError:
    """An error about another service's ``old`` parameter, told in terms of this API's ``new``."""
    if err.details.get("field") == old:
        err.details["field"] = new
        if err.message.startswith(f"{old}:"):
            err.message = new + err.message[len(old) :]
            err.args = (err.message,)
    return err
