"""Node-driven host networking for VMs on KVM hosts: what the agent's ``/v1/network/*`` gets.

When a VM starts on a KVM host the node sends the agent the VM's NICs with the addresses the
node's IPAM gave them (``/v1/network/vm``): the agent makes them dnsmasq reservations of
their L3s and programs the VM's EIPs (DNAT/SNAT) in nftables. Security-group rules come per
NIC through the host service's ``ApplySecurityGroupRules`` (``/v1/network/nic/rules``). Stop
and destroy remove the VM (``/v1/network/vm/remove``), which takes its reservations, rules
and EIPs away. An EIP attached to or detached from a running VM re-sends that VM. The VIP's
L2 bridge is made on the host too, and each EIP names it with the VIP's prefix length, so
the agent puts the VIP there and routes it (the host answers ARP for the VIP).

Rows of other services (L3 networks, IP ranges, NICs, EIPs) are read through the resource
registry, never by importing those services. Nothing here formats user data into text: the
body is JSON values, and the agent validates each one (MACs, IPv4 addresses, interface names,
RFC 1123 labels) before it reaches a dnsmasq file or an nftables document.

The DHCP server's address on each host's bridge is the highest host address of the L3's CIDR
that is in none of its IP ranges and is not the gateway (so IPAM never hands it to a VM); an
L3 whose ranges fill its whole CIDR has none (``KVM.NO_DHCP_ADDRESS``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from zmn.api.errors import OperationFailed
from zmn.api.ids import short_id
from zmn.core.models import TagVO
from zmn.services.kvm.reads import reading, row_of, tag_value

if TYPE_CHECKING:
    from zmn.core.node import Node
    from zmn.services.kvm.reads import Reader

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
LIVE_EIP_STATES = ("Running", "Paused", "Unknown")


def nic_device(vm_uuid: str, device_id: int) -> str:
    """The tap device of a VM NIC on the host (15 characters at most, from the UUID)."""
    return f"v{short_id(vm_uuid)}.{int(device_id)}"


def dhcp_server_ip(cidr: str, ranges: Iterable[tuple[str, str]], gateway: str | None) -> str | None:
    """The highest host address of ``cidr`` outside every (start, end) range, not the gateway."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    taken = [(int(ipaddress.IPv4Address(a)), int(ipaddress.IPv4Address(b))) for a, b in ranges]
    gw = int(ipaddress.IPv4Address(gateway)) if gateway else None
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    for value in range(last, first - 1, -1):
        if value != gw and not any(a <= value <= b for a, b in taken):
            return str(ipaddress.IPv4Address(value))
    return None


def guest_hostname(name: str | None, tag: str | None) -> str | None:
    """The DHCP host name: the VM's ``hostname::`` tag, else its name when that is already a
    DNS label; otherwise none (a name is never rewritten into something else)."""
    for candidate in (tag, name):
        if candidate and _LABEL.fullmatch(candidate.lower()):
            return candidate.lower()
    return None


_HOSTNAME_TAG = select(TagVO.tag).where(
    TagVO.resourceUuid == bindparam("uuid"),
    TagVO.type == "System",
    TagVO.tag.like("hostname::%"),
)


class HostNetworkPlanner:
    """Builds the agent bodies from the database (read through the registry)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._statements: dict[tuple[str, Any], Any] = {}  # built once per (use, model)

    def _model(self, type_name: str) -> Any:
        rt = self.node.resources.types.get(type_name)
        return None if rt is None else rt.model

    def l3_settings(self, conn: Reader, l3_uuid: str, bridge: str) -> dict[str, Any] | None:
        l3_m, range_m = self._model("L3Network"), self._model("IpRange")
        if l3_m is None or range_m is None:
            return None
        l3 = row_of(conn, l3_m, l3_uuid)
        ranges = conn.execute(self._ranges_of(range_m), {"l3": l3_uuid}).all()
        ranges = [r for r in ranges if int(getattr(r, "ipVersion", 4) or 4) == 4]
        if l3 is None or not ranges:
            return None
        first = ranges[0]
        cidr = str(ipaddress.IPv4Network(first.networkCidr, strict=False))
        server = dhcp_server_ip(cidr, [(r.startIp, r.endIp) for r in ranges], first.gateway)
        if server is None:
            raise OperationFailed(
                f"L3 network {l3.name}: its IP ranges fill {cidr}, leaving no address for the"
                " DHCP server on the hosts; shrink a range by one address",
                code="KVM.NO_DHCP_ADDRESS",
                l3NetworkUuid=l3_uuid,
            )
        out: dict[str, Any] = {
            "l3Uuid": l3_uuid,
            "bridgeName": bridge,
            "cidr": cidr,
            "serverIp": server,
            "dns": [],
        }
        if first.gateway:
            out["gateway"] = first.gateway
        if l3.dnsDomain:
            out["dnsDomain"] = l3.dnsDomain
        return out

    def _ranges_of(self, range_m: Any) -> Any:
        """An L3's IP ranges (``:l3``), the statement built once per model."""
        stmt = self._statements.get(("ranges", range_m))
        if stmt is None:
            table = range_m.__table__
            stmt = select(table).where(table.c.l3NetworkUuid == bindparam("l3"))
            self._statements[("ranges", range_m)] = stmt
        return stmt

    def _hostname_tag(self, conn: Reader, vm_uuid: str) -> str | None:
        tag = conn.scalar(_HOSTNAME_TAG, {"uuid": vm_uuid})
        return str(tag).split("::", 1)[1] if tag else None

    def _eip_rows(self, conn: Reader, nic_uuids: list[str]) -> list[tuple[Any, Any]]:
        """(EIP, VIP) of the enabled EIPs on these NICs (the VIP row may be gone: None)."""
        eip_m, vip_m = self._model("Eip"), self._model("Vip")
        if eip_m is None or not nic_uuids:
            return []
        stmt = self._statements.get(("eips", eip_m))
        if stmt is None:
            nics: Any = bindparam("nics", expanding=True)
            table = eip_m.__table__
            stmt = select(table).where(table.c.vmNicUuid.in_(nics)).order_by(table.c.vipIp)
            self._statements[("eips", eip_m)] = stmt
        rows = conn.execute(stmt, {"nics": nic_uuids}).all()
        return [
            (r, None if vip_m is None else row_of(conn, vip_m, r.vipUuid))
            for r in rows
            if r.guestIp and getattr(r, "state", "Enabled") == "Enabled"
        ]

    def _prefix(self, conn: Reader, vip: Any) -> int | None:
        """The VIP's prefix length: its netmask, else its L3's first IPv4 range's."""
        if vip.netmask:
            return ipaddress.IPv4Network(f"0.0.0.0/{vip.netmask}").prefixlen
        range_m = self._model("IpRange")
        first = None if range_m is None else conn.execute(
            self._ranges_of(range_m), {"l3": vip.l3NetworkUuid}
        ).first()  # fmt: skip
        if first is None or not first.networkCidr or ":" in str(first.networkCidr):
            return None
        return ipaddress.IPv4Network(first.networkCidr, strict=False).prefixlen

    def vip_l3s(self, vm: Mapping[str, Any], conn: Reader | None = None) -> list[str]:
        """The L3 networks of the VIPs of ``vm``'s EIPs: their bridges must be on the host."""
        nics = [str(n["uuid"]) for n in vm.get("vmNics") or [] if n.get("uuid")]
        with reading(self.node, conn) as s:
            return sorted({str(v.l3NetworkUuid) for _e, v in self._eip_rows(s, nics) if v})

    def eips_of(
        self,
        conn: Reader,
        nic_uuids: list[str],
        bridges: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """The agent's EIPs; with the VIP's bridge known (``bridges``, by L3) the agent also
        routes them (VIP on that bridge, see ``agent.network.eipnet``)."""
        out: list[dict[str, Any]] = []
        for r, vip in self._eip_rows(conn, nic_uuids):
            eip: dict[str, Any] = {"vipIp": str(r.vipIp), "vmIp": str(r.guestIp)}
            bridge = None if vip is None else (bridges or {}).get(str(vip.l3NetworkUuid), {})
            prefix = None if vip is None else self._prefix(conn, vip)
            if bridge and bridge.get("bridgeName") and prefix is not None:
                eip["bridgeName"], eip["prefixLen"] = bridge["bridgeName"], prefix
            out.append(eip)
        return out

    def vm_body(
        self,
        vm: Mapping[str, Any],
        bridges: Mapping[str, Mapping[str, Any]],
        conn: Reader | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """``/v1/network/vm`` for a VM inventory (NICs without an address are left out);
        ``tags``: the VM's system tags when the caller has read them."""
        uuid = str(vm["uuid"])
        nics = [n for n in vm.get("vmNics") or [] if n.get("ip") and n.get("l3NetworkUuid")]
        l3s: dict[str, dict[str, Any]] = {}
        body_nics = []
        with reading(self.node, conn) as s:
            tag = self._hostname_tag(s, uuid) if tags is None else tag_value(tags, "hostname")
            hostname = guest_hostname(str(vm.get("name") or ""), tag)
            for n in sorted(nics, key=lambda n: int(n.get("deviceId") or 0)):
                l3 = str(n["l3NetworkUuid"])
                bridge = bridges.get(l3, {}).get("bridgeName")
                if not bridge:
                    continue
                if l3 not in l3s:
                    settings = self.l3_settings(s, l3, str(bridge))
                    if settings is None:
                        continue
                    l3s[l3] = settings
                nic = {
                    "mac": n["mac"],
                    "ip": n["ip"],
                    "l3Uuid": l3,
                    "device": nic_device(uuid, int(n.get("deviceId") or 0)),
                }
                if hostname and int(n.get("deviceId") or 0) == 0:
                    nic["hostname"] = hostname
                body_nics.append(nic)
            eips = self.eips_of(s, [str(n["uuid"]) for n in nics if n.get("uuid")], bridges)
        ips = {n["ip"] for n in body_nics}
        return {
            "uuid": uuid,
            "l3s": list(l3s.values()),
            "nics": body_nics,
            "eips": [e for e in eips if e["vmIp"] in ips],
        }

    def nic_mac(self, nic_uuid: str) -> tuple[str, str] | None:
        """(MAC, VM UUID) of a NIC."""
        nic_m = self._model("VmNic")
        if nic_m is None:
            return None
        with self.node.db.tx() as s:
            row = s.get(nic_m, nic_uuid)
            return None if row is None else (str(row.mac), str(row.vmInstanceUuid))


def agent_rules(rules: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Security-group rule inventories -> the agent's rules. A rule with a remote group
    becomes one rule per address of that group (none: it matches nothing, so it goes)."""
    out: list[dict[str, Any]] = []
    for r in rules:
        base: dict[str, Any] = {"type": r.get("type"), "protocol": r.get("protocol") or "ALL"}
        start, end = r.get("startPort"), r.get("endPort")
        if start is not None and start != -1:
            base["startPort"], base["endPort"] = start, end if end is not None else start
        if r.get("remoteSecurityGroupUuid"):
            for ip in r.get("remoteIps") or []:
                prefix = 128 if ":" in str(ip) else 32
                out.append({**base, "allowedCidr": f"{ip}/{prefix}"})
            continue
        default = "::/0" if int(r.get("ipVersion") or 4) == 6 else "0.0.0.0/0"
        out.append({**base, "allowedCidr": r.get("allowedCidr") or default})
    return out
