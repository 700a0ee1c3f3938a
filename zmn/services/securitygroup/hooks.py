"""How security groups follow the VM lifecycle (through :mod:`zmn.core.vmhooks` only).

* a new VM: its NICs join the groups attached to their L3 networks, and every NIC in a group
  gets its rules on the host (a failure fails the create, which rolls back);
* start and migrate push the rules to the (new) host; stop, destroy and migrate clear them
  on the host the VM left (a host that cannot be reached is only logged there);
* expunge and NIC deletion drop the NICs' memberships, and NICs whose rules name those
  groups as remote groups get their new address sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, delete, exists, or_, select

from zmn.services.securitygroup.apply import RulePusher, groups_of, members, referring_groups
from zmn.services.securitygroup.models import SecurityGroupL3NetworkRefVO, VmNicSecurityGroupRefVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


def _nics(vm: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in vm.get("vmNics") or [] if n.get("uuid")]


def _hosts(vm: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(h for h in (vm.get("hostUuid"), vm.get("lastHostUuid")) if h))


def join_attached_groups(session: Session, nics: list[dict[str, Any]]) -> set[str]:
    """Put NICs in the groups attached to their L3 networks; returns the groups joined."""
    joined: set[str] = set()
    for nic in nics:
        l3 = nic.get("l3NetworkUuid")
        if not l3:
            continue
        ref = SecurityGroupL3NetworkRefVO
        groups = session.scalars(select(ref.securityGroupUuid).where(ref.l3NetworkUuid == l3))
        have = set(groups_of(session, [nic["uuid"]]).get(nic["uuid"], []))
        for group in groups:
            if group not in have:
                session.add(VmNicSecurityGroupRefVO(vmNicUuid=nic["uuid"], securityGroupUuid=group))
                joined.add(group)
    return joined


def leave_groups(session: Session, nic_uuids: list[str]) -> set[str]:
    """Drop every membership of the NICs; returns the groups they were in."""
    if not nic_uuids:
        return set()
    groups = {g for gs in groups_of(session, nic_uuids).values() for g in gs}
    session.execute(
        delete(VmNicSecurityGroupRefVO).where(VmNicSecurityGroupRefVO.vmNicUuid.in_(nic_uuids))
    )
    return groups


def dependents(session: Session, groups: set[str], exclude: set[str]) -> set[str]:
    """NICs whose rules name one of ``groups`` as remote group (their address sets change)."""
    referring: set[str] = set()
    for group in groups:
        referring |= referring_groups(session, group)
    return members(session, referring) - exclude


_L3_REF = cast(Table, SecurityGroupL3NetworkRefVO.__table__)
_NIC_REF = cast(Table, VmNicSecurityGroupRefVO.__table__)
# Core, built once: most new VMs are on L3 networks without security groups
_ANY_GROUP = select(
    or_(
        exists().where(_L3_REF.c.l3NetworkUuid.in_(bindparam("l3s", expanding=True))),
        exists().where(_NIC_REF.c.vmNicUuid.in_(bindparam("nics", expanding=True))),
    )
)


def _may_have_groups(node: Node, nics: list[dict[str, Any]]) -> bool:
    """Whether a group is attached to one of the NICs' L3 networks or a NIC is in a group."""
    if not nics:
        return False
    l3s = sorted({n["l3NetworkUuid"] for n in nics if n.get("l3NetworkUuid")})
    with node.db.fast() as conn:
        found = conn.execute(_ANY_GROUP, {"l3s": l3s, "nics": [n["uuid"] for n in nics]})
        return bool(found.scalar())


class SecurityGroupVmHooks:
    """Implements the VM lifecycle extension points for security groups."""

    def __init__(self, node: Node, pusher: RulePusher) -> None:
        self.node = node
        self.pusher = pusher

    async def _push(self, host_uuid: str, nic_uuids: list[str]) -> None:
        """Send the rules of the NICs that are in a group to ``host_uuid``; raise on failure."""
        with self.node.db.tx() as s:
            grouped = groups_of(s, nic_uuids)
            work = [
                (nic, self.pusher.effective_rules(s, nic)) for nic in nic_uuids if nic in grouped
            ]
        for nic, rules in work:
            await self.pusher.apply(host_uuid, nic, rules)

    def _grouped(self, nic_uuids: list[str]) -> list[str]:
        with self.node.db.tx() as s:
            return sorted(groups_of(s, nic_uuids))

    async def after_vm_instantiate(self, vm: dict[str, Any], host_uuid: str) -> None:
        nics = _nics(vm)
        uuids = [n["uuid"] for n in nics]
        if not _may_have_groups(self.node, nics):
            return  # no group on its L3 networks and no membership: nothing to join or push
        with self.node.db.tx() as s:
            joined = join_attached_groups(s, nics)
            others = dependents(s, joined, set(uuids))
        await self._push(host_uuid, uuids)
        await self.pusher.refresh(others)

    async def rollback_vm_instantiate(self, vm: dict[str, Any], host_uuid: str) -> None:
        uuids = [n["uuid"] for n in _nics(vm)]
        await self.pusher.clear(host_uuid, self._grouped(uuids))
        with self.node.db.tx() as s:
            others = dependents(s, leave_groups(s, uuids), set(uuids))
        await self.pusher.refresh(others)

    async def after_vm_start(self, vm: dict[str, Any], host_uuid: str) -> None:
        await self._push(host_uuid, [n["uuid"] for n in _nics(vm)])

    async def after_vm_stop(self, vm: dict[str, Any], host_uuid: str | None) -> None:
        grouped = self._grouped([n["uuid"] for n in _nics(vm)])
        for host in dict.fromkeys([host_uuid, *_hosts(vm)]):
            await self.pusher.clear(host, grouped)

    async def after_vm_migrate(
        self, vm: dict[str, Any], source_host_uuid: str, target_host_uuid: str
    ) -> None:
        uuids = [n["uuid"] for n in _nics(vm)]
        await self._push(target_host_uuid, uuids)
        if source_host_uuid != target_host_uuid:
            await self.pusher.clear(source_host_uuid, self._grouped(uuids))

    async def after_vm_destroy(self, vm: dict[str, Any]) -> None:
        grouped = self._grouped([n["uuid"] for n in _nics(vm)])
        for host in _hosts(vm):
            await self.pusher.clear(host, grouped)

    async def before_vm_expunge(self, vm: dict[str, Any]) -> None:
        uuids = [n["uuid"] for n in _nics(vm)]
        nic_rt = self.node.resources.types.get("VmNic")
        if nic_rt is not None and vm.get("uuid"):
            with self.node.db.tx() as s:
                m = nic_rt.model
                uuids += [
                    str(u) for u in s.scalars(select(m.uuid).where(m.vmInstanceUuid == vm["uuid"]))
                ]
        uuids = sorted(set(uuids))
        grouped = self._grouped(uuids)
        for host in _hosts(vm):
            await self.pusher.clear(host, grouped)
        with self.node.db.tx() as s:
            others = dependents(s, leave_groups(s, uuids), set(uuids))
        await self.pusher.refresh(others)

    async def before_vm_nic_delete(self, nic: dict[str, Any]) -> None:
        uuid = str(nic["uuid"])
        with self.node.db.tx() as s:
            host = self.pusher.placements(s, [uuid]).get(uuid)
        if host and self._grouped([uuid]):
            await self.pusher.clear(host, [uuid])
        with self.node.db.tx() as s:
            others = dependents(s, leave_groups(s, [uuid]), {uuid})
        await self.pusher.refresh(others)
