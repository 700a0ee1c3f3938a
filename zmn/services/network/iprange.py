"""IPv4 range checks: addresses, netmask, gateway, and overlap with an L3's other ranges.

Pure functions (no database) so that they are tested directly. Every error names the field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from zmn.api.errors import Conflict, InvalidArgument


@dataclass(frozen=True)
class IpRangeSpec:
    startIp: str
    endIp: str
    netmask: str
    gateway: str
    networkCidr: str


def parse_ipv4(field: str, value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise InvalidArgument(
            f"{field}: {value!r} is not an IPv4 address", code="IP_RANGE.INVALID_IP", field=field
        ) from None


def parse_netmask(value: str) -> int:
    """The prefix length of a dotted netmask (``255.255.255.0`` -> 24); refuses holes."""
    parse_ipv4("netmask", value)
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{value.strip()}").prefixlen
    except ValueError:
        raise InvalidArgument(
            f"netmask: {value!r} is not a netmask (its one bits must be contiguous)",
            code="IP_RANGE.INVALID_NETMASK",
            field="netmask",
        ) from None
    if not 1 <= prefix <= 30:
        raise InvalidArgument(
            f"netmask: {value} (/{prefix}) leaves no room for a gateway and addresses;"
            " use /1 to /30",
            code="IP_RANGE.INVALID_NETMASK",
            field="netmask",
        )
    return prefix


def check_range(start_ip: str, end_ip: str, netmask: str, gateway: str) -> IpRangeSpec:
    """A range that is well formed and fits its network, or the error naming the bad field."""
    start = parse_ipv4("startIp", start_ip)
    end = parse_ipv4("endIp", end_ip)
    gw = parse_ipv4("gateway", gateway)
    prefix = parse_netmask(netmask)
    network = ipaddress.IPv4Network(f"{gw}/{prefix}", strict=False)
    if start > end:
        raise InvalidArgument(
            f"endIp: {end} is before startIp {start}", code="IP_RANGE.INVALID_RANGE", field="endIp"
        )
    for field, ip in (("gateway", gw), ("startIp", start), ("endIp", end)):
        if ip == network.network_address or ip == network.broadcast_address:
            what = "network" if ip == network.network_address else "broadcast"
            raise InvalidArgument(
                f"{field}: {ip} is the {what} address of {network}",
                code="IP_RANGE.OUTSIDE_NETWORK",
                field=field,
            )
    for field, ip in (("startIp", start), ("endIp", end)):
        if ip not in network:
            raise InvalidArgument(
                f"{field}: {ip} is outside network {network} (gateway {gw}, netmask {netmask})",
                code="IP_RANGE.OUTSIDE_NETWORK",
                field=field,
            )
    if start <= gw <= end:
        raise InvalidArgument(
            f"gateway: {gw} is inside the range {start}-{end}; VMs would be given it",
            code="IP_RANGE.GATEWAY_IN_RANGE",
            field="gateway",
        )
    return IpRangeSpec(str(start), str(end), str(network.netmask), str(gw), str(network))


def range_from_cidr(cidr: str, gateway: str | None = None) -> IpRangeSpec:
    """Every usable address of ``cidr`` except the gateway (its first, or its last, address)."""
    try:
        network = ipaddress.IPv4Network(cidr.strip(), strict=False)
    except ValueError:
        raise InvalidArgument(
            f"networkCidr: {cidr!r} is not an IPv4 CIDR like 10.0.0.0/24",
            code="IP_RANGE.INVALID_CIDR",
            field="networkCidr",
        ) from None
    if not 1 <= network.prefixlen <= 29:
        raise InvalidArgument(
            f"networkCidr: /{network.prefixlen} is too small for a gateway and a range;"
            " use /1 to /29",
            code="IP_RANGE.INVALID_CIDR",
            field="networkCidr",
        )
    first, last = network.network_address + 1, network.broadcast_address - 1
    gw = parse_ipv4("gateway", gateway) if gateway else first
    if gw == first:
        start, end = first + 1, last
    elif gw == last:
        start, end = first, last - 1
    else:
        raise InvalidArgument(
            f"gateway: with networkCidr the gateway must be the first ({first}) or last ({last})"
            " usable address; use AddIpRange for anything else",
            code="IP_RANGE.GATEWAY_IN_RANGE",
            field="gateway",
        )
    return check_range(str(start), str(end), str(network.netmask), str(gw))


@dataclass(frozen=True)
class ExistingRange:
    uuid: str
    name: str
    startIp: str
    endIp: str
    gateway: str
    networkCidr: str


def check_against(spec: IpRangeSpec, existing: Iterable[ExistingRange]) -> None:
    """All ranges of one L3 share its network and gateway, and never overlap."""
    start, end = ipaddress.IPv4Address(spec.startIp), ipaddress.IPv4Address(spec.endIp)
    for other in existing:
        if other.networkCidr != spec.networkCidr or other.gateway != spec.gateway:
            raise InvalidArgument(
                f"gateway: the L3 network's ranges use network {other.networkCidr} and gateway"
                f" {other.gateway} (range {other.name});"
                f" this one has {spec.networkCidr} and {spec.gateway}",
                code="IP_RANGE.NETWORK_MISMATCH",
                field="gateway",
            )
        o_start, o_end = ipaddress.IPv4Address(other.startIp), ipaddress.IPv4Address(other.endIp)
        if start <= o_end and o_start <= end:
            raise Conflict(
                f"startIp: {spec.startIp}-{spec.endIp} overlaps range {other.name}"
                f" ({other.startIp}-{other.endIp}) of the same L3 network",
                code="IP_RANGE.OVERLAP",
                field="startIp",
                overlaps=other.uuid,
            )
