"""Security groups: rules, NIC membership, L3 attachment, and keeping hosts' rules current.

Every change that alters what a live NIC may receive (rules, group state, membership, a
remote group's members) is followed by a push of the affected NICs' effective rules to
their hosts. The VM lifecycle is followed through :mod:`zmn.core.vmhooks` only, so
``plugins.disabled=securityGroup`` leaves VMs working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from zmn.api.errors import Conflict, InvalidArgument
from zmn.core import crud, links
from zmn.core.consistency import ConsistencyCheck
from zmn.core.db import new_uuid, utcnow
from zmn.core.models import AccountResourceRefVO
from zmn.core.resource import Expansion, LinkSpec, RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.core.vmhooks import (
    VmAfterDestroy,
    VmAfterInstantiate,
    VmAfterMigrate,
    VmAfterStart,
    VmAfterStop,
    VmBeforeExpunge,
    VmNicBeforeDelete,
)
from zmn.services.securitygroup.api import (
    AddSecurityGroupRule,
    AddVmNicToSecurityGroup,
    AttachSecurityGroupToL3Network,
    ChangeSecurityGroupState,
    CreateSecurityGroup,
    DeleteSecurityGroup,
    DeleteSecurityGroupRule,
    DeleteVmNicFromSecurityGroup,
    DetachSecurityGroupFromL3Network,
    UpdateSecurityGroup,
)
from zmn.services.securitygroup.apply import RulePusher, members, referring_groups, rule_inventory
from zmn.services.securitygroup.checks import SecurityGroupConsistency
from zmn.services.securitygroup.hooks import SecurityGroupVmHooks
from zmn.services.securitygroup.models import (
    SecurityGroupL3NetworkRefVO,
    SecurityGroupRuleVO,
    SecurityGroupVO,
    VmNicSecurityGroupRefVO,
)
from zmn.services.securitygroup.rules import RULE_KEYS, RuleSpec, check_rule

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.bus import Principal
    from zmn.core.node import Node

SG_STATE = StateMachine(
    "SecurityGroup",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
)

NIC_LINK = LinkSpec(
    VmNicSecurityGroupRefVO,
    "VmNic",
    "vmNicUuid",
    "SecurityGroup",
    "securityGroupUuid",
    left_name="securityGroup",
    right_name="vmNic",
)
L3_LINK = LinkSpec(
    SecurityGroupL3NetworkRefVO,
    "SecurityGroup",
    "securityGroupUuid",
    "L3Network",
    "l3NetworkUuid",
    left_name="l3Network",
    right_name="securityGroup",
)
MAX_RULES = 100  # per group, as ZStack's default


def group_details(session: Session, invs: list[dict[str, Any]]) -> None:
    """Embed each group's rules and attached L3 networks, one query each per page."""
    by_uuid = {inv["uuid"]: inv for inv in invs}
    for inv in invs:
        inv["rules"] = []
        inv["attachedL3NetworkUuids"] = []
    rows = session.scalars(
        select(SecurityGroupRuleVO)
        .where(SecurityGroupRuleVO.securityGroupUuid.in_(list(by_uuid)))
        .order_by(SecurityGroupRuleVO.createDate, SecurityGroupRuleVO.uuid)
    )
    for row in rows:
        by_uuid[row.securityGroupUuid]["rules"].append(rule_inventory(row))
    ref = SecurityGroupL3NetworkRefVO
    for group, l3 in session.execute(
        select(ref.securityGroupUuid, ref.l3NetworkUuid)
        .where(ref.securityGroupUuid.in_(list(by_uuid)))
        .order_by(ref.l3NetworkUuid)
    ):
        by_uuid[group]["attachedL3NetworkUuids"].append(l3)


def rules_of_own_groups(principal: Principal) -> list[Any]:
    """A normal account sees the rules of its own groups only."""
    own = select(AccountResourceRefVO.resourceUuid).where(
        AccountResourceRefVO.accountUuid == principal.accountUuid
    )
    return [SecurityGroupRuleVO.securityGroupUuid.in_(own)]


class SecurityGroupService(Service):
    name = "securityGroup"
    summary = "security groups: firewall rules for VM NICs"
    requires = ("network",)
    state_machines = [SG_STATE]
    error_codes = {
        "SECURITY_GROUP.NOT_FOUND": "no security group with that UUID or name",
        "SECURITY_GROUP.DUPLICATE_NAME": "a security group with that name exists",
        "SECURITY_GROUP.INVALID_STATE": "the state event is not allowed in the group's state",
        "SECURITY_GROUP.INVALID_RULE": "a rule field is missing or wrong (the field is named)",
        "SECURITY_GROUP.DUPLICATE_RULE": "the group already has that rule",
        "SECURITY_GROUP.TOO_MANY_RULES": "the group would have more rules than allowed",
        "SECURITY_GROUP.NIC_NOT_IN_GROUP": "the NIC is not in the security group",
        "SECURITY_GROUP.ALREADY_ATTACHED": "the group is already attached to the L3 network",
        "SECURITY_GROUP.NOT_ATTACHED": "the group is not attached to the L3 network",
        "SECURITY_GROUP_RULE.NOT_FOUND": "no security group rule with that UUID",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.pusher = RulePusher(node)
        hooks = SecurityGroupVmHooks(node, self.pusher)
        for point in (
            VmAfterInstantiate,
            VmAfterStart,
            VmAfterStop,
            VmAfterMigrate,
            VmAfterDestroy,
            VmBeforeExpunge,
            VmNicBeforeDelete,
        ):
            node.extensions.add(point, hooks)  # type: ignore[type-abstract, arg-type]
        node.extensions.add(ConsistencyCheck, SecurityGroupConsistency(node))  # type: ignore[type-abstract]

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "SecurityGroup",
                SecurityGroupVO,
                self.name,
                "security-group",
                columns=["uuid", "name", "state", "description"],
                enums={"state": sorted(SG_STATE.states)},
                owned=True,
                inventory_hook=group_details,
                state_field="state",
                summary="firewall rules applied to the VM NICs in the group",
            )
        )
        registry.add(
            ResourceType(
                "SecurityGroupRule",
                SecurityGroupRuleVO,
                self.name,
                "security-group-rule",
                columns=[
                    "uuid",
                    "securityGroupUuid",
                    "type",
                    "protocol",
                    "startPort",
                    "endPort",
                    "allowedCidr",
                    "remoteSecurityGroupUuid",
                ],
                refs={
                    "securityGroupUuid": RefSpec("SecurityGroup", on_delete="keep", reverse="rule"),
                    "remoteSecurityGroupUuid": RefSpec(
                        "SecurityGroup",
                        on_delete="keep",
                        forward="remoteSecurityGroup",
                        reverse="remoteRule",
                    ),
                },
                enums={
                    "type": ["Ingress", "Egress"],
                    "protocol": ["TCP", "UDP", "ICMP", "ALL"],
                    "state": ["Enabled", "Disabled"],
                },
                docs={
                    "startPort": "first port (TCP and UDP; null for ICMP and ALL)",
                    "endPort": "last port (TCP and UDP; null for ICMP and ALL)",
                    "allowedCidr": "source (Ingress) or destination (Egress) addresses",
                    "remoteSecurityGroupUuid": (
                        "the group whose NICs the rule allows, instead of a CIDR"
                    ),
                },
                access_filter=rules_of_own_groups,
                summary="one rule of a security group",
            )
        )
        registry.add_link(NIC_LINK)
        registry.add_link(L3_LINK)
        registry.inject(
            "VmNic",
            Expansion(
                "securityGroup",
                "SecurityGroup",
                "uuid",
                "uuid",
                (VmNicSecurityGroupRefVO, "vmNicUuid", "securityGroupUuid"),
                plugin=self.name,
                doc="security groups the NIC is in",
            ),
        )

    # ----------------------------------------------------------------- groups

    @handler(CreateSecurityGroup)
    async def create_group(self, msg: CreateSecurityGroup, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("SecurityGroup")
        row = SecurityGroupVO(name=msg.name, state="Enabled", ipVersion=msg.ipVersion)
        return await crud.create(
            call, "SecurityGroup", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(UpdateSecurityGroup)
    async def update_group(self, msg: UpdateSecurityGroup, call: Call) -> dict[str, Any]:
        links.check_rename(call, "SecurityGroup", msg.uuid, msg.name)
        return await crud.update_fields(
            call, "SecurityGroup", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(ChangeSecurityGroupState)
    async def change_group_state(self, msg: ChangeSecurityGroupState, call: Call) -> dict[str, Any]:
        reply = await crud.change_state(call, "SecurityGroup", msg.uuid, msg.stateEvent, SG_STATE)
        await self._refresh_groups(call, {msg.uuid})
        return dict(reply)

    @handler(DeleteSecurityGroup)
    async def delete_group(self, msg: DeleteSecurityGroup, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            crud.get_row(s, self.node.resources.get("SecurityGroup"), msg.uuid)
            affected = members(s, {msg.uuid} | referring_groups(s, msg.uuid))

        def drop_rules(s: Session, row: Any) -> None:
            rule = SecurityGroupRuleVO
            s.execute(
                delete(rule).where(
                    (rule.securityGroupUuid == row.uuid)
                    | (rule.remoteSecurityGroupUuid == row.uuid)
                )
            )

        await crud.delete(call, "SecurityGroup", msg.uuid, cascade=msg.cascade, cleanup=drop_rules)
        await self.pusher.refresh(affected)
        return {}

    # ----------------------------------------------------------------- rules

    @handler(AddSecurityGroupRule)
    async def add_rule(self, msg: AddSecurityGroupRule, call: Call) -> dict[str, Any]:
        specs = self._rule_specs(msg)
        rt = self.node.resources.get("SecurityGroup")
        with call.tx() as s:
            group = crud.get_row(s, rt, msg.securityGroupUuid, "securityGroupUuid")
            resolved = [self._resolve_remote(call, s, spec, field) for spec, field in specs]
            rows = self._new_rules(s, group, resolved)
            group.lastOpDate = utcnow()
            s.flush()
            inv = rt.inventories(s, [group])[0]
        await call.publish(
            "/security-group/rule/added",
            {
                "resourceType": "SecurityGroup",
                "uuid": group.uuid,
                "ruleUuids": [r.uuid for r in rows],
            },
        )
        await self._refresh_groups(call, {group.uuid})
        return {"inventory": inv}

    @handler(DeleteSecurityGroupRule)
    async def delete_rule(self, msg: DeleteSecurityGroupRule, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            rule = SecurityGroupRuleVO
            groups = set(
                s.scalars(select(rule.securityGroupUuid).where(rule.uuid.in_(msg.ruleUuids)))
            )
            s.execute(delete(rule).where(rule.uuid.in_(msg.ruleUuids)))
        for group in sorted(groups):
            await call.publish(
                "/security-group/rule/deleted",
                {"resourceType": "SecurityGroup", "uuid": group, "ruleUuids": msg.ruleUuids},
            )
        await self._refresh_groups(call, groups)
        return {}

    def _rule_specs(self, msg: AddSecurityGroupRule) -> list[tuple[RuleSpec, str]]:
        single = {k: getattr(msg, k) for k in RULE_KEYS if getattr(msg, k) is not None}
        specs: list[tuple[RuleSpec, str]] = []
        if single:
            specs.append((check_rule(single), ""))
        for i, raw in enumerate(msg.rules):
            if not isinstance(raw, dict):
                raise InvalidArgument(
                    f"rules[{i}]: expected a map of rule fields", field=f"rules[{i}]"
                )
            specs.append((check_rule(raw, f"rules[{i}]."), f"rules[{i}]."))
        if not specs:
            raise InvalidArgument(
                "give a rule (type=... protocol=... [startPort= endPort= allowedCidr=])"
                " or rules=[...]",
                code="SECURITY_GROUP.INVALID_RULE",
                field="rules",
            )
        return specs

    def _resolve_remote(self, call: Call, s: Session, spec: RuleSpec, prefix: str) -> RuleSpec:
        if spec.remoteSecurityGroupUuid is None:
            return spec
        uuid = crud.resolve(
            s,
            self.node,
            call.principal,
            "SecurityGroup",
            spec.remoteSecurityGroupUuid,
            f"{prefix}remoteSecurityGroupUuid",
        )
        return RuleSpec(
            spec.type,
            spec.protocol,
            spec.startPort,
            spec.endPort,
            spec.allowedCidr,
            uuid,
            spec.description,
        )

    def _new_rules(
        self, s: Session, group: Any, specs: list[RuleSpec]
    ) -> list[SecurityGroupRuleVO]:
        existing = list(
            s.scalars(
                select(SecurityGroupRuleVO).where(
                    SecurityGroupRuleVO.securityGroupUuid == group.uuid
                )
            )
        )
        if len(existing) + len(specs) > MAX_RULES:
            raise Conflict(
                f"rules: security group {group.name} has {len(existing)} rules; adding"
                f" {len(specs)} would pass the limit of {MAX_RULES}",
                code="SECURITY_GROUP.TOO_MANY_RULES",
                field="rules",
            )
        seen = {
            (
                r.type,
                r.protocol,
                r.startPort,
                r.endPort,
                r.allowedCidr,
                r.remoteSecurityGroupUuid,
            ): r.uuid
            for r in existing
        }
        rows = []
        for spec in specs:
            if spec.key() in seen:
                raise Conflict(
                    f"rules: security group {group.name} already has the rule {spec.type}"
                    f" {spec.protocol} {_ports(spec)} from"
                    f" {spec.allowedCidr or spec.remoteSecurityGroupUuid}",
                    code="SECURITY_GROUP.DUPLICATE_RULE",
                    field="rules",
                    ruleUuid=seen[spec.key()],
                )
            row = SecurityGroupRuleVO(
                uuid=new_uuid(),
                securityGroupUuid=group.uuid,
                type=spec.type,
                protocol=spec.protocol,
                startPort=spec.startPort,
                endPort=spec.endPort,
                allowedCidr=spec.allowedCidr,
                remoteSecurityGroupUuid=spec.remoteSecurityGroupUuid,
                ipVersion=4,
                state="Enabled",
                description=spec.description,
            )
            seen[spec.key()] = row.uuid
            s.add(row)
            rows.append(row)
        return rows

    # ----------------------------------------------------------------- NICs

    @handler(AddVmNicToSecurityGroup)
    async def add_nics(self, msg: AddVmNicToSecurityGroup, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("SecurityGroup")
        with call.tx() as s:
            group = crud.get_row(s, rt, msg.securityGroupUuid, "securityGroupUuid")
            have = members(s, {group.uuid})
            added = [n for n in dict.fromkeys(msg.vmNicUuids) if n not in have]
            for nic in added:
                s.add(VmNicSecurityGroupRefVO(vmNicUuid=nic, securityGroupUuid=group.uuid))
            group.lastOpDate = utcnow()
            s.flush()
            inv = rt.inventories(s, [group])[0]
        for nic in added:
            await links.publish_link(call, NIC_LINK, "attached", nic, group.uuid)
        await self._refresh_members(call, group.uuid, set(added))
        return {"inventory": inv}

    @handler(DeleteVmNicFromSecurityGroup)
    async def remove_nics(self, msg: DeleteVmNicFromSecurityGroup, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("SecurityGroup")
        ref = VmNicSecurityGroupRefVO
        with call.tx() as s:
            group = crud.get_row(s, rt, msg.securityGroupUuid, "securityGroupUuid")
            have = members(s, {group.uuid})
            missing = [n for n in msg.vmNicUuids if n not in have]
            if missing:
                raise Conflict(
                    f"vmNicUuids: NIC {', '.join(missing)} is not in security group {group.name}",
                    code="SECURITY_GROUP.NIC_NOT_IN_GROUP",
                    field="vmNicUuids",
                    vmNicUuids=missing,
                )
            removed = sorted(set(msg.vmNicUuids))
            s.execute(
                delete(ref).where(ref.securityGroupUuid == group.uuid, ref.vmNicUuid.in_(removed))
            )
            group.lastOpDate = utcnow()
            s.flush()
            inv = rt.inventories(s, [group])[0]
        for nic in removed:
            await links.publish_link(call, NIC_LINK, "detached", nic, group.uuid)
        await self._refresh_members(call, group.uuid, set(removed))
        return {"inventory": inv}

    # ----------------------------------------------------------------- L3 networks

    @handler(AttachSecurityGroupToL3Network)
    async def attach_l3(self, msg: AttachSecurityGroupToL3Network, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("SecurityGroup")
        with call.tx() as s:
            group = crud.get_row(s, rt, msg.securityGroupUuid, "securityGroupUuid")
            l3 = links.row_of(call, s, "L3Network", msg.l3NetworkUuid, "l3NetworkUuid")
            links.add_link(s, L3_LINK, group, l3)
            s.flush()
            inv = rt.inventories(s, [group])[0]
        await links.publish_link(call, L3_LINK, "attached", group.uuid, l3.uuid)
        return {"inventory": inv}

    @handler(DetachSecurityGroupFromL3Network)
    async def detach_l3(self, msg: DetachSecurityGroupFromL3Network, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("SecurityGroup")
        with call.tx() as s:
            group = crud.get_row(s, rt, msg.securityGroupUuid, "securityGroupUuid")
            l3 = links.row_of(call, s, "L3Network", msg.l3NetworkUuid, "l3NetworkUuid")
            links.remove_link(s, L3_LINK, group, l3)
            s.flush()
            inv = rt.inventories(s, [group])[0]
        await links.publish_link(call, L3_LINK, "detached", group.uuid, l3.uuid)
        return {"inventory": inv}

    # ----------------------------------------------------------------- pushing

    async def _refresh_groups(self, call: Call, groups: set[str]) -> None:
        """Rules of ``groups`` changed: push the rules of their member NICs."""
        with call.tx() as s:
            nics = members(s, groups)
        await self.pusher.refresh(nics)

    async def _refresh_members(self, call: Call, group: str, changed: set[str]) -> None:
        """Membership of ``group`` changed: the NICs themselves, and NICs whose rules name the
        group as remote group (their address sets changed)."""
        with call.tx() as s:
            nics = changed | members(s, referring_groups(s, group))
        await self.pusher.refresh(nics)


def _ports(spec: RuleSpec) -> str:
    if spec.startPort is None:
        return "(all ports)"
    if spec.startPort == spec.endPort:
        return f"port {spec.startPort}"
    return f"ports {spec.startPort}-{spec.endPort}"
