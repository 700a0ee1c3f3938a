from __future__ import annotations

from typing import Annotated, Any, Literal

from zmn.api.limits import Range
from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api

RULE_CODE = "SECURITY_GROUP.INVALID_RULE"


@api(resource="SecurityGroup", verb="create")
class CreateSecurityGroup(CreateMessage, kw_only=True):
    """Create a security group: firewall rules that apply to the VM NICs in it."""

    name: Annotated[str, Doc("security group name")]
    ipVersion: Annotated[Literal[4], Doc("IP version of the rules (4)")] = 4


@api(resource="SecurityGroup", verb="update")
class UpdateSecurityGroup(ApiMessage, kw_only=True):
    """Rename a security group or change its description."""

    uuid: Annotated[str, Doc("security group UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="SecurityGroup", verb="change-state")
class ChangeSecurityGroupState(ApiMessage, kw_only=True):
    """Enable or disable a security group (a disabled group's rules are not applied)."""

    uuid: Annotated[str, Doc("security group UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]


@api(resource="SecurityGroup", verb="delete")
class DeleteSecurityGroup(DeleteMessage, kw_only=True):
    """Delete a security group with its rules; its NICs leave it, and rules of other groups
    naming it as remote group go too."""


@api(resource="SecurityGroup", verb="add-rule")
class AddSecurityGroupRule(ApiMessage, kw_only=True):
    """Add rules to a security group: one from the rule parameters, or many as `rules`."""

    securityGroupUuid: Annotated[str, Doc("security group UUID or name"), Ref("SecurityGroup")]
    rules: Annotated[
        list[dict[str, Any]],
        Doc(
            "rules as maps with the keys type, protocol, startPort, endPort, allowedCidr,"
            " remoteSecurityGroupUuid, description"
        ),
    ] = []
    type: Annotated[
        Literal["Ingress", "Egress"] | None, Doc("direction: Ingress (to the VM) or Egress")
    ] = None
    protocol: Annotated[Literal["TCP", "UDP", "ICMP", "ALL"] | None, Doc("protocol")] = None
    startPort: Annotated[
        int | None, Doc("first port, 0-65535 (TCP and UDP only)"), Range(0, 65535, RULE_CODE)
    ] = None
    endPort: Annotated[
        int | None, Doc("last port, >= startPort (default startPort)"), Range(0, 65535, RULE_CODE)
    ] = None
    allowedCidr: Annotated[
        str | None, Doc("addresses the rule allows, e.g. 10.0.0.0/24 (default 0.0.0.0/0)")
    ] = None
    remoteSecurityGroupUuid: Annotated[
        str | None,
        Doc("allow the NICs of this security group (UUID or name) instead of a CIDR"),
    ] = None
    description: Annotated[str | None, Doc("free text for the rule")] = None


@api(resource="SecurityGroup", verb="delete-rule")
class DeleteSecurityGroupRule(ApiMessage, kw_only=True):
    """Delete rules from their security groups."""

    ruleUuids: Annotated[list[str], Doc("rule UUIDs"), Ref("SecurityGroupRule")]


@api(resource="SecurityGroup", verb="add-nic")
class AddVmNicToSecurityGroup(ApiMessage, kw_only=True):
    """Put VM NICs in a security group; its rules are applied to them on their hosts."""

    securityGroupUuid: Annotated[str, Doc("security group UUID or name"), Ref("SecurityGroup")]
    vmNicUuids: Annotated[list[str], Doc("VM NIC UUIDs"), Ref("VmNic")]


@api(resource="SecurityGroup", verb="remove-nic")
class DeleteVmNicFromSecurityGroup(ApiMessage, kw_only=True):
    """Take VM NICs out of a security group."""

    securityGroupUuid: Annotated[str, Doc("security group UUID or name"), Ref("SecurityGroup")]
    vmNicUuids: Annotated[list[str], Doc("VM NIC UUIDs"), Ref("VmNic")]


@api(resource="SecurityGroup", verb="attach")
class AttachSecurityGroupToL3Network(ApiMessage, kw_only=True):
    """Attach a security group to an L3 network: NICs created on it later join the group."""

    securityGroupUuid: Annotated[str, Doc("security group UUID or name"), Ref("SecurityGroup")]
    l3NetworkUuid: Annotated[str, Doc("L3 network UUID or name"), Ref("L3Network")]


@api(resource="SecurityGroup", verb="detach")
class DetachSecurityGroupFromL3Network(ApiMessage, kw_only=True):
    """Detach a security group from an L3 network (NICs already in the group stay)."""

    securityGroupUuid: Annotated[str, Doc("security group UUID or name"), Ref("SecurityGroup")]
    l3NetworkUuid: Annotated[str, Doc("L3 network UUID or name"), Ref("L3Network")]
