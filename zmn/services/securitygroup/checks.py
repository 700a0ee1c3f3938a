"""Security-group invariants for CheckConsistency: memberships and rules point at live rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from zmn.core.consistency import Violation
from zmn.services.securitygroup.models import (
    SecurityGroupL3NetworkRefVO,
    SecurityGroupRuleVO,
    SecurityGroupVO,
    VmNicSecurityGroupRefVO,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


class SecurityGroupConsistency:
    def __init__(self, node: Node) -> None:
        self.node = node

    def check_consistency(self, session: Session) -> list[Violation]:
        groups = set(session.scalars(select(SecurityGroupVO.uuid)))
        out: list[Violation] = []
        refs = session.execute(
            select(VmNicSecurityGroupRefVO.vmNicUuid, VmNicSecurityGroupRefVO.securityGroupUuid)
        ).all()
        nics = self._live("VmNic", session, {str(n) for n, _ in refs})
        for nic, group in refs:
            where = f"membership of NIC {nic} in security group {group}"
            if group not in groups:
                out.append(_v("sg-nic-ref", nic, f"{where}: the group does not exist"))
            if nics is not None and nic not in nics:
                out.append(_v("sg-nic-ref", nic, f"{where}: the NIC does not exist"))
        for rule in session.scalars(select(SecurityGroupRuleVO)):
            if rule.securityGroupUuid not in groups:
                out.append(
                    _v(
                        "sg-rule-group",
                        rule.uuid,
                        f"rule's group {rule.securityGroupUuid} does not exist",
                        "SecurityGroupRule",
                    )
                )
            remote = rule.remoteSecurityGroupUuid
            if remote and remote not in groups:
                out.append(
                    _v(
                        "sg-rule-group",
                        rule.uuid,
                        f"rule's remote group {remote} does not exist",
                        "SecurityGroupRule",
                    )
                )
        l3_refs = session.execute(
            select(
                SecurityGroupL3NetworkRefVO.securityGroupUuid,
                SecurityGroupL3NetworkRefVO.l3NetworkUuid,
            )
        ).all()
        l3s = self._live("L3Network", session, {str(l3) for _, l3 in l3_refs})
        for group, l3 in l3_refs:
            if group not in groups or (l3s is not None and l3 not in l3s):
                out.append(
                    _v(
                        "sg-l3-ref",
                        group,
                        f"security group {group} is attached to L3 {l3};"
                        " one of them does not exist",
                    )
                )
        return out

    def _live(self, type_name: str, session: Session, uuids: set[str]) -> set[str] | None:
        """Which of ``uuids`` exist, or None when the type's plugin is not loaded."""
        rt = self.node.resources.types.get(type_name)
        if rt is None:
            return None
        if not uuids:
            return set()
        m = rt.model
        return {str(u) for u in session.scalars(select(m.uuid).where(m.uuid.in_(sorted(uuids))))}


def _v(check: str, uuid: str, message: str, rtype: str = "VmNicSecurityGroupRef") -> Violation:
    return Violation(check=check, resourceType=rtype, uuid=uuid, message=message)
