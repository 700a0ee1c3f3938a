"""What the EIP plugin does when NICs go away, and the invariants it adds to CheckConsistency.

NIC and VM rows belong to the VM service; they are read through the registry's model
classes (never by importing the VM service), and only when the VM plugin is loaded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.core.consistency import Violation
from zmn.core.db import utcnow
from zmn.services.eip.models import EipVO, VipVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

log = logging.getLogger("zmn.eip")


def detach_from_nics(session: Session, nic_uuids: list[str]) -> list[str]:
    """Clear the NIC of every EIP attached to one of ``nic_uuids``; returns those EIPs."""
    if not nic_uuids:
        return []
    eips = list(session.scalars(select(EipVO.uuid).where(EipVO.vmNicUuid.in_(nic_uuids))))
    if eips:
        session.execute(
            update(EipVO)
            .where(EipVO.uuid.in_(eips))
            .values(vmNicUuid=None, guestIp=None, lastOpDate=utcnow())
        )
    return eips


class EipVmHooks:
    """``VmBeforeExpunge`` and ``VmNicBeforeDelete``: EIPs of a NIC that goes are detached."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def before_vm_expunge(self, vm: dict[str, Any]) -> None:
        nics = [str(n["uuid"]) for n in vm.get("vmNics") or []]
        nic_rt = self.node.resources.types.get("VmNic")
        with self.node.db.tx() as s:
            if nic_rt is not None and vm.get("uuid"):
                model = nic_rt.model
                nics += [
                    str(u)
                    for u in s.scalars(select(model.uuid).where(model.vmInstanceUuid == vm["uuid"]))
                ]
            eips = detach_from_nics(s, sorted(set(nics)))
        await self._detached(eips, vm.get("uuid"))

    async def before_vm_nic_delete(self, nic: dict[str, Any]) -> None:
        with self.node.db.tx() as s:
            eips = detach_from_nics(s, [str(nic["uuid"])])
        await self._detached(eips, nic.get("vmInstanceUuid"))

    async def _detached(self, eips: list[str], vm_uuid: Any) -> None:
        for uuid in eips:
            log.info("EIP %s detached: the NIC of VM %s goes away", uuid, vm_uuid)
            await self.node.bus.publish(
                "/eip/detached", {"resourceType": "Eip", "uuid": uuid, "vmInstanceUuid": vm_uuid}
            )


class EipConsistency:
    """Every EIP's VIP exists and carries its address; every attached NIC exists; every VIP
    holds a live address of its L3 network, given for a VIP."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def check_consistency(self, session: Session) -> list[Violation]:
        out: list[Violation] = []
        vips = {v.uuid: v for v in session.scalars(select(VipVO))}
        eips = list(session.scalars(select(EipVO)))
        nic_rt = self.node.resources.types.get("VmNic")
        nic_uuids: set[str] = set()
        if nic_rt is not None:
            wanted = [e.vmNicUuid for e in eips if e.vmNicUuid]
            if wanted:
                m = nic_rt.model
                nic_uuids = {
                    str(u) for u in session.scalars(select(m.uuid).where(m.uuid.in_(wanted)))
                }
        for eip in eips:
            vip = vips.get(eip.vipUuid)
            if vip is None:
                out.append(
                    _v("eip-vip-exists", "Eip", eip.uuid, f"VIP {eip.vipUuid} does not exist")
                )
            elif vip.ip != eip.vipIp or vip.useFor != "Eip":
                out.append(
                    _v(
                        "eip-vip-exists",
                        "Eip",
                        eip.uuid,
                        f"VIP {vip.uuid} has address {vip.ip} and useFor {vip.useFor};"
                        f" the EIP says {eip.vipIp} and Eip",
                    )
                )
            if eip.vmNicUuid and nic_rt is not None and eip.vmNicUuid not in nic_uuids:
                out.append(
                    _v("eip-nic-exists", "Eip", eip.uuid, f"VM NIC {eip.vmNicUuid} does not exist")
                )
        used = {e.vipUuid for e in eips}
        for vip in vips.values():
            if vip.useFor == "Eip" and vip.uuid not in used:
                out.append(_v("vip-use", "Vip", vip.uuid, "useFor is Eip but no EIP uses the VIP"))
        out += self._addresses(session, list(vips.values()))
        return out

    def _addresses(self, session: Session, vips: list[VipVO]) -> list[Violation]:
        ip_rt = self.node.resources.types.get("UsedIp")
        if ip_rt is None:
            return []
        m = ip_rt.model
        rows = {
            str(uuid): (str(ip), str(used_for))
            for uuid, ip, used_for in session.execute(select(m.uuid, m.ip, m.usedFor))
        }
        out: list[Violation] = []
        held = set()
        for vip in vips:
            held.add(vip.usedIpUuid)
            found = rows.get(vip.usedIpUuid or "")
            if found is None or found != (vip.ip, "Vip"):
                out.append(
                    _v(
                        "vip-ip-exists",
                        "Vip",
                        vip.uuid,
                        f"VIP {vip.ip} should hold UsedIp {vip.usedIpUuid} (usedFor=Vip);"
                        f" found {found}",
                    )
                )
        for uuid, (ip, used_for) in rows.items():
            if used_for == "Vip" and uuid not in held:
                out.append(
                    _v(
                        "vip-ip-owned",
                        "UsedIp",
                        uuid,
                        f"address {ip} is used for a VIP but no VIP holds it",
                    )
                )
        return out


def _v(check: str, rtype: str, uuid: str, message: str) -> Violation:
    return Violation(check=check, resourceType=rtype, uuid=uuid, message=message)
