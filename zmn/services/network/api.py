from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api

# ----------------------------------------------------------------------------- L2


@api(resource="L2Network", verb="create", admin=True)
class CreateL2NoVlanNetwork(CreateMessage, kw_only=True):
    """Create an L2 network straight on a physical interface of the hosts (no VLAN)."""

    name: Annotated[str, Doc("L2 network name")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
    physicalInterface: Annotated[str, Doc("host interface to bridge, e.g. eth0")]


@api(resource="L2Network", verb="create", admin=True)
class CreateL2VlanNetwork(CreateMessage, kw_only=True):
    """Create an L2 network on a VLAN of a physical interface of the hosts."""

    name: Annotated[str, Doc("L2 network name")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
    physicalInterface: Annotated[str, Doc("host interface carrying the VLAN, e.g. eth0")]
    vlan: Annotated[int, Doc("VLAN id, 1 to 4094")]


@api(resource="L2Network", verb="update", admin=True)
class UpdateL2Network(ApiMessage, kw_only=True):
    """Rename an L2 network or change its description."""

    uuid: Annotated[str, Doc("L2 network UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="L2Network", verb="delete", admin=True)
class DeleteL2Network(DeleteMessage, kw_only=True):
    """Delete an L2 network; refused while it has L3 networks unless cascade=true."""


@api(resource="L2Network", verb="attach", admin=True)
class AttachL2NetworkToCluster(ApiMessage, kw_only=True):
    """Attach an L2 network to a cluster of the same zone (its hosts get the bridge)."""

    l2NetworkUuid: Annotated[str, Doc("L2 network UUID or name"), Ref("L2Network")]
    clusterUuid: Annotated[str, Doc("cluster UUID or name"), Ref("Cluster")]


@api(resource="L2Network", verb="detach", admin=True)
class DetachL2NetworkFromCluster(ApiMessage, kw_only=True):
    """Detach an L2 network from a cluster."""

    l2NetworkUuid: Annotated[str, Doc("L2 network UUID or name"), Ref("L2Network")]
    clusterUuid: Annotated[str, Doc("cluster UUID or name"), Ref("Cluster")]


# ----------------------------------------------------------------------------- L3

Category = Literal["Private", "Public", "System"]


@api(resource="L3Network", verb="create", admin=True)
class CreateL3Network(CreateMessage, kw_only=True):
    """Create an L3 network (an IP network) on an L2 network."""

    name: Annotated[str, Doc("L3 network name")]
    l2NetworkUuid: Annotated[str, Doc("L2 network UUID or name"), Ref("L2Network")]
    type: Annotated[Literal["L3BasicNetwork"], Doc("L3 network type")] = "L3BasicNetwork"
    category: Annotated[Category, Doc("Private (VM networks), Public (EIPs, VIPs) or System")] = (
        "Private"
    )
    system: Annotated[bool, Doc("used by system VMs only (needs category Public or System)")] = (
        False
    )
    dnsDomain: Annotated[str | None, Doc("DNS domain given to VMs, e.g. example.local")] = None


@api(resource="L3Network", verb="update", admin=True)
class UpdateL3Network(ApiMessage, kw_only=True):
    """Rename an L3 network or change its description or DNS domain."""

    uuid: Annotated[str, Doc("L3 network UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None
    dnsDomain: Annotated[str | None, Doc("new DNS domain")] = None


@api(resource="L3Network", verb="delete", admin=True)
class DeleteL3Network(DeleteMessage, kw_only=True):
    """Delete an L3 network; refused while it has IP ranges unless cascade=true."""


@api(resource="L3Network", verb="change-state", admin=True)
class ChangeL3NetworkState(ApiMessage, kw_only=True):
    """Enable or disable an L3 network (a disabled one gives no new NICs)."""

    uuid: Annotated[str, Doc("L3 network UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]


# ----------------------------------------------------------------------------- IP ranges


@api(resource="IpRange", verb="add", admin=True)
class AddIpRange(CreateMessage, kw_only=True):
    """Add an IPv4 range to an L3 network: the addresses VMs may be given."""

    name: Annotated[str, Doc("IP range name")]
    l3NetworkUuid: Annotated[str, Doc("L3 network UUID or name"), Ref("L3Network")]
    startIp: Annotated[str, Doc("first address, e.g. 10.0.0.100")]
    endIp: Annotated[str, Doc("last address (inclusive), e.g. 10.0.0.200")]
    netmask: Annotated[str, Doc("netmask, e.g. 255.255.255.0")]
    gateway: Annotated[str, Doc("gateway, in the network but outside the range")]


@api(resource="IpRange", verb="add", admin=True)
class AddIpRangeByNetworkCidr(CreateMessage, kw_only=True):
    """Add every usable address of a CIDR to an L3 network, except the gateway."""

    name: Annotated[str, Doc("IP range name")]
    l3NetworkUuid: Annotated[str, Doc("L3 network UUID or name"), Ref("L3Network")]
    networkCidr: Annotated[str, Doc("network, e.g. 10.0.0.0/24")]
    gateway: Annotated[str | None, Doc("the first (default) or last usable address")] = None


@api(resource="IpRange", verb="update", admin=True)
class UpdateIpRange(ApiMessage, kw_only=True):
    """Rename an IP range or change its description."""

    uuid: Annotated[str, Doc("IP range UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="IpRange", verb="delete", admin=True)
class DeleteIpRange(DeleteMessage, kw_only=True):
    """Delete an IP range."""


# ----------------------------------------------------------------------------- IPAM (internal)


@api(internal=True)
class AllocateIp(ApiMessage, kw_only=True):
    """Take a free address of an L3 network (or the given static one) for a NIC or a VIP."""

    l3NetworkUuid: Annotated[str, Doc("L3 network UUID")]
    ip: Annotated[str | None, Doc("static address to take; any free one when not given")] = None
    usedFor: Annotated[Literal["Vm", "Vip"], Doc("what the address is for")] = "Vm"
    vmNicUuid: Annotated[str | None, Doc("the NIC the address is for, when known")] = None


@api(internal=True)
class ReleaseIp(ApiMessage, kw_only=True):
    """Give an address back to its L3 network (a no-op when it is already free)."""

    usedIpUuid: Annotated[str, Doc("UsedIp UUID")]


@api(internal=True)
class SetUsedIpOwner(ApiMessage, kw_only=True):
    """Record which NIC holds an address (or none)."""

    usedIpUuid: Annotated[str, Doc("UsedIp UUID")]
    vmNicUuid: Annotated[str | None, Doc("VmNic UUID, or none")] = None


@api(internal=True)
class DeleteUsedIp(DeleteMessage, kw_only=True):
    """Cascade from an IP range or L3 network delete: the NIC holding the address goes too."""
