"""Networks: L2 networks (attached to clusters), L3 networks on them, and their IP ranges."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from zmn.core.consistency import ConsistencyCheck
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Service
from zmn.services.network.ipam import IpamHandlers, UsedIpConsistency
from zmn.services.network.l2 import CLUSTER_LINK, L2Handlers, attached_clusters
from zmn.services.network.l3 import L3_STATE, L3Handlers, ip_ranges
from zmn.services.network.models import IpRangeVO, L2NetworkVO, L3NetworkVO, UsedIpVO

if TYPE_CHECKING:
    from zmn.core.node import Node


class NetworkService(L2Handlers, L3Handlers, IpamHandlers, Service):
    name = "network"
    summary = "L2 and L3 networks and IP ranges"
    requires = ("zone", "cluster")
    state_machines = [L3_STATE]
    error_codes = {
        "L2_NETWORK.NOT_FOUND": "no L2 network with that UUID or name",
        "L2_NETWORK.DUPLICATE_NAME": "an L2 network with that name exists",
        "L2_NETWORK.HAS_DEPENDENTS": "the L2 network still has L3 networks",
        "L2_NETWORK.INVALID_INTERFACE": "the physical interface is not an interface name",
        "L2_NETWORK.INVALID_VLAN": "the VLAN id is not between 1 and 4094",
        "L2_NETWORK.DUPLICATE_VLAN": "the zone has an L2 network on that interface and VLAN",
        "L2_NETWORK.ZONE_MISMATCH": "the cluster is in another zone",
        "L2_NETWORK.ALREADY_ATTACHED": "the L2 network is already attached to the cluster",
        "L2_NETWORK.NOT_ATTACHED": "the L2 network is not attached to the cluster",
        "L2_NETWORK.INTERFACE_CONFLICT": "another L2 network on that interface and VLAN is there",
        "L3_NETWORK.NOT_FOUND": "no L3 network with that UUID or name",
        "L3_NETWORK.DUPLICATE_NAME": "an L3 network with that name exists",
        "L3_NETWORK.HAS_DEPENDENTS": "the L3 network still has IP ranges",
        "L3_NETWORK.INVALID_STATE": "the state event is not allowed in the L3 network's state",
        "L3_NETWORK.INVALID_CATEGORY": "category and system do not go together",
        "L3_NETWORK.INVALID_DNS_DOMAIN": "the DNS domain is not a domain name",
        "IP_RANGE.NOT_FOUND": "no IP range with that UUID or name",
        "IP_RANGE.DUPLICATE_NAME": "the L3 network has an IP range with that name",
        "IP_RANGE.INVALID_IP": "an address is not IPv4",
        "IP_RANGE.INVALID_NETMASK": "the netmask is not contiguous or leaves no addresses",
        "IP_RANGE.INVALID_CIDR": "the CIDR is not an IPv4 network",
        "IP_RANGE.INVALID_RANGE": "endIp is before startIp",
        "IP_RANGE.OUTSIDE_NETWORK": "an address is outside the network or is its network/broadcast",
        "IP_RANGE.GATEWAY_IN_RANGE": "the gateway is inside the range",
        "IP_RANGE.NETWORK_MISMATCH": "the L3 network's ranges use another network or gateway",
        "IP_RANGE.OVERLAP": "the range overlaps another range of the same L3 network",
        "IP_RANGE.HAS_DEPENDENTS": "addresses of the range are in use",
        "L3.IP_EXHAUSTED": "IP exhausted: every address of the L3 network's ranges is in use",
        "L3.IP_IN_USE": "the static address asked for is already in use",
        "L3.IP_NOT_IN_RANGE": "the static address is in no IP range of the L3 network",
        "L3.IP_ALLOCATION_CONTENDED": "too many nodes raced for addresses; try again",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        node.extensions.add(ConsistencyCheck, UsedIpConsistency(node))  # type: ignore[type-abstract]

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "L2Network",
                L2NetworkVO,
                self.name,
                "l2-network",
                aliases={"attachedClusterUuids": "cluster.uuid"},  # ZStack's list field
                columns=["uuid", "name", "zoneUuid", "type", "physicalInterface", "vlan"],
                refs={"zoneUuid": RefSpec("Zone", on_delete="cascade")},
                enums={"type": ["L2NoVlanNetwork", "L2VlanNetwork"]},
                docs={
                    "vlan": "VLAN id (L2VlanNetwork only)",
                    "physicalInterface": "host interface bridged",
                },
                admin_only=True,
                inventory_hook=attached_clusters,
                summary="a layer-2 network on a host interface, attached to clusters",
            )
        )
        registry.add_link(CLUSTER_LINK)
        ranges = ResourceType(
            "IpRange",
            IpRangeVO,
            self.name,
            "ip-range",
            columns=["uuid", "name", "l3NetworkUuid", "startIp", "endIp", "gateway", "netmask"],
            refs={"l3NetworkUuid": RefSpec("L3Network", on_delete="cascade")},
            summary="addresses of an L3 network that VMs may be given",
        )
        registry.add(
            ResourceType(
                "L3Network",
                L3NetworkVO,
                self.name,
                "l3-network",
                columns=["uuid", "name", "l2NetworkUuid", "category", "state", "system"],
                refs={
                    "l2NetworkUuid": RefSpec("L2Network", on_delete="cascade"),
                    "zoneUuid": RefSpec("Zone", on_delete="cascade"),
                },
                enums={
                    "type": ["L3BasicNetwork"],
                    "category": ["Private", "Public", "System"],
                    "state": sorted(L3_STATE.states),
                },
                inventory_hook=partial(ip_ranges, range_inventory=ranges.inventory),
                state_field="state",
                summary="an IP network on an L2 network",
            )
        )
        registry.add(ranges)
        registry.add(
            ResourceType(
                "UsedIp",
                UsedIpVO,
                self.name,
                "used-ip",
                columns=["uuid", "ip", "l3NetworkUuid", "usedFor", "vmNicUuid"],
                refs={
                    "l3NetworkUuid": RefSpec("L3Network", on_delete="cascade"),
                    "ipRangeUuid": RefSpec("IpRange", on_delete="cascade"),
                },
                enums={"usedFor": ["Vm", "Vip"]},
                docs={
                    "ipInLong": "the address as an integer (for sorting and ranges)",
                    "usedFor": "Vm (a VM NIC) or Vip",
                    "vmNicUuid": "the NIC holding the address (usedFor=Vm)",
                },
                admin_only=True,
                summary="an address of an L3 network in use by a NIC or a VIP",
            )
        )
