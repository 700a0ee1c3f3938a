"""The effective rules of a NIC and pushing them to the NIC's host.

A NIC's effective rules are the enabled rules of every enabled group it is in; a rule with a
remote group carries the addresses of that group's NICs (``remoteIps``). They are sent to the
host holding the NIC's VM with the host service's internal ``ApplySecurityGroupRules``; an
empty list clears the NIC on that host. NIC and VM rows are read through the registry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.api.message import decode_args
from zmn.core.bus import Envelope
from zmn.services.securitygroup.models import (
    SecurityGroupRuleVO,
    SecurityGroupVO,
    VmNicSecurityGroupRefVO,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from zmn.core.node import Node

log = logging.getLogger("zmn.securitygroup")

# VM states in which the VM's NICs are live on its host and hold rules there.
LIVE_STATES = frozenset({"Running", "Paused", "Pausing", "Resuming", "Rebooting", "Unknown"})


def rule_inventory(row: SecurityGroupRuleVO) -> dict[str, Any]:
    return {
        "uuid": row.uuid,
        "securityGroupUuid": row.securityGroupUuid,
        "type": row.type,
        "protocol": row.protocol,
        "startPort": row.startPort,
        "endPort": row.endPort,
        "allowedCidr": row.allowedCidr,
        "remoteSecurityGroupUuid": row.remoteSecurityGroupUuid,
        "ipVersion": row.ipVersion,
        "state": row.state,
        "description": row.description,
    }


def groups_of(session: Session, nic_uuids: Iterable[str]) -> dict[str, list[str]]:
    """NIC UUID -> UUIDs of the groups it is in."""
    out: dict[str, list[str]] = {}
    nics = list(nic_uuids)
    if not nics:
        return out
    ref = VmNicSecurityGroupRefVO
    for nic, group in session.execute(
        select(ref.vmNicUuid, ref.securityGroupUuid)
        .where(ref.vmNicUuid.in_(nics))
        .order_by(ref.createDate, ref.securityGroupUuid)
    ):
        out.setdefault(nic, []).append(group)
    return out


def members(session: Session, group_uuids: Iterable[str]) -> set[str]:
    """NICs in any of the groups."""
    groups = list(group_uuids)
    if not groups:
        return set()
    ref = VmNicSecurityGroupRefVO
    return set(session.scalars(select(ref.vmNicUuid).where(ref.securityGroupUuid.in_(groups))))


def referring_groups(session: Session, group_uuid: str) -> set[str]:
    """Groups with a rule whose remote group is ``group_uuid``."""
    rule = SecurityGroupRuleVO
    return set(
        session.scalars(
            select(rule.securityGroupUuid).where(rule.remoteSecurityGroupUuid == group_uuid)
        )
    )


class RulePusher:
    """Computes effective rules and sends them to hosts."""

    def __init__(self, node: Node) -> None:
        self.node = node

    # ----------------------------------------------------------------- computing

    def effective_rules(self, session: Session, nic_uuid: str) -> list[dict[str, Any]]:
        groups = groups_of(session, [nic_uuid]).get(nic_uuid, [])
        if not groups:
            return []
        enabled = list(
            session.scalars(
                select(SecurityGroupVO.uuid).where(
                    SecurityGroupVO.uuid.in_(groups), SecurityGroupVO.state == "Enabled"
                )
            )
        )
        rows = session.scalars(
            select(SecurityGroupRuleVO)
            .where(
                SecurityGroupRuleVO.securityGroupUuid.in_(enabled),
                SecurityGroupRuleVO.state == "Enabled",
            )
            .order_by(SecurityGroupRuleVO.createDate, SecurityGroupRuleVO.uuid)
        ).all()
        out = []
        for row in rows:
            inv = rule_inventory(row)
            if row.remoteSecurityGroupUuid:
                inv["remoteIps"] = self.addresses(
                    session, members(session, [row.remoteSecurityGroupUuid])
                )
            out.append(inv)
        return out

    def addresses(self, session: Session, nic_uuids: set[str]) -> list[str]:
        nic_rt = self.node.resources.types.get("VmNic")
        if nic_rt is None or not nic_uuids:
            return []
        m = nic_rt.model
        ips = session.scalars(select(m.ip).where(m.uuid.in_(sorted(nic_uuids)), m.ip.is_not(None)))
        return sorted({str(ip) for ip in ips})

    def placements(self, session: Session, nic_uuids: Iterable[str]) -> dict[str, str]:
        """NIC UUID -> host UUID, for the NICs whose VM is live on a host."""
        nic_rt = self.node.resources.types.get("VmNic")
        vm_rt = self.node.resources.types.get("VmInstance")
        nics = sorted(set(nic_uuids))
        if nic_rt is None or vm_rt is None or not nics:
            return {}
        nic, vm = nic_rt.model, vm_rt.model
        rows = session.execute(
            select(nic.uuid, vm.hostUuid, vm.state)
            .join(vm, vm.uuid == nic.vmInstanceUuid)
            .where(nic.uuid.in_(nics))
        )
        return {str(n): str(host) for n, host, state in rows if host and state in LIVE_STATES}

    # ----------------------------------------------------------------- sending

    async def apply(self, host_uuid: str, nic_uuid: str, rules: list[dict[str, Any]]) -> None:
        """Send one NIC's rules to its host (raises when the host refuses)."""
        cls = self.node.apis.get("ApplySecurityGroupRules")
        msg = decode_args(cls, {"hostUuid": host_uuid, "vmNicUuid": nic_uuid, "rules": rules})
        service = self.node.route(cls.__api__.name)
        env = Envelope(cls.__api__.name, msg, self.node.admin_principal(), resource_uuid=host_uuid)
        await self.node.bus.call(service, env)

    async def refresh(self, nic_uuids: Iterable[str]) -> list[dict[str, Any]]:
        """Push the current rules of every live NIC given; failures are logged and returned."""
        with self.node.db.tx() as s:
            where = self.placements(s, nic_uuids)
            work = [
                (host, nic, self.effective_rules(s, nic)) for nic, host in sorted(where.items())
            ]
        failures = []
        for host, nic, rules in work:
            try:
                await self.apply(host, nic, rules)
            except Exception as exc:
                log.warning(
                    "security group rules of NIC %s not applied on host %s: %s", nic, host, exc
                )
                failures.append({"vmNicUuid": nic, "hostUuid": host, "error": str(exc)})
        return failures

    async def clear(self, host_uuid: str | None, nic_uuids: Iterable[str]) -> None:
        """Remove NICs' rules from a host; a host that cannot be reached is only logged."""
        if not host_uuid:
            return
        for nic in sorted(set(nic_uuids)):
            try:
                await self.apply(host_uuid, nic, [])
            except Exception as exc:
                log.warning(
                    "security group rules of NIC %s not cleared on host %s: %s", nic, host_uuid, exc
                )
