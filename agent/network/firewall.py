"""Security-group rules and EIP NAT as an nftables JSON document (``nft -j -f -``).

The agent owns three tables and rewrites them whole in one atomic transaction, so a request
carries the complete desired state for the host (every guarded NIC, every EIP):

``bridge zagent``
    L2 guard, hook forward before br_netfilter: a frame from a guarded port must carry the
    NIC's MAC and, when IP, its address; ARP and DHCP requests pass. Stateless.
``inet zagent``
    Stateful SG rules, hook forward: established/related accept; ``ip saddr <nic ip> jump
    out-<i>`` (egress rules; allowed traffic *returns* so the receiver's chain still runs),
    then ``ip daddr <nic ip> jump in-<i>`` (ingress rules, else drop). No egress rules means
    all egress is allowed, as in ZStack. Bridged traffic reaches this hook through
    br_netfilter (``net.bridge.bridge-nf-call-iptables=1``, set on apply): kernels without
    ``nf_conntrack_bridge`` have no conntrack in the bridge family, and the guard above makes
    the source address trustworthy, so matching on the NIC's IP stands in for the port.
``ip zagent_nat``
    ``prerouting`` DNAT ``vipIp -> vmIp`` and ``postrouting`` SNAT ``vmIp -> vipIp``.

EIPs are routed by the host (see :mod:`agent.network.eipnet` for the addresses that make
the host answer for the VIP and the VM's gateway). Routing must not open more than the
EIPs: while there are EIPs, ``inet zagent`` also drops traffic routed *into* a VM bridge
that is not DNAT-ed to an EIP (``vmBridges``) and traffic routed *out of* one from an address
that has no EIP; traffic bridged between ports of one bridge is not routed and not touched.

Values only ever appear as JSON values after validation; chain names are made from
indexes, never from user data.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from agent import validate as v
from agent.network.executor import Executor

FILTER_TABLE = "zagent"
NAT_TABLE = "zagent_nat"
PROTOCOLS = ("TCP", "UDP", "ICMP", "ALL")
BRIDGE_SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
Json = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    direction: str  # Ingress | Egress
    protocol: str  # TCP | UDP | ICMP | ALL
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    ports: tuple[int, int] | None = None


@dataclass(frozen=True)
class NicRules:
    device: str
    mac: str | None
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Eip:
    vip: ipaddress.IPv4Address
    vm_ip: ipaddress.IPv4Address
    bridge: str | None = None  # the VIP's L2 bridge on this host (public side)
    prefix: int | None = None  # the VIP's L3 prefix length
    vm_bridge: str | None = None  # the VM NIC's bridge
    gateway: ipaddress.IPv4Address | None = None  # the VM NIC's L3 gateway
    vm_device: str | None = None  # the VM NIC's tap


@dataclass(frozen=True)
class FirewallSpec:
    nics: tuple[NicRules, ...]
    eips: tuple[Eip, ...]
    vm_bridges: tuple[str, ...] = ()


def parse_rule(raw: Any, f: str) -> Rule:
    d = v.obj(raw, f)
    proto = v.choice(str(d.get("protocol", "ALL")).upper(), f"{f}.protocol", PROTOCOLS)
    start, end = d.get("startPort"), d.get("endPort")
    ports = None
    if proto in ("TCP", "UDP") and start not in (None, -1):
        lo = v.integer(start, f"{f}.startPort", lo=1, hi=65535)
        hi = v.integer(end if end is not None else start, f"{f}.endPort", lo=lo, hi=65535)
        ports = (lo, hi)
    return Rule(
        direction=v.choice(d.get("type"), f"{f}.type", ("Ingress", "Egress")),
        protocol=proto,
        cidr=v.cidr(d.get("allowedCidr", "0.0.0.0/0"), f"{f}.allowedCidr"),
        ports=ports,
    )


def parse(raw: Any, f: str = "firewall") -> FirewallSpec:
    d = v.obj(raw, f)
    nics: list[NicRules] = []
    for i, n in enumerate(v.items(d.get("nics", []), f"{f}.nics", max_items=1024)):
        nf = f"{f}.nics[{i}]"
        no = v.obj(n, nf)
        nics.append(
            NicRules(
                device=v.ifname(no.get("device"), f"{nf}.device"),
                mac=None if no.get("mac") is None else v.mac(no["mac"], f"{nf}.mac"),
                ip=None if no.get("ip") is None else v.ip_any(no["ip"], f"{nf}.ip"),
                rules=tuple(
                    parse_rule(r, f"{nf}.rules[{j}]")
                    for j, r in enumerate(v.items(no.get("rules", []), f"{nf}.rules"))
                ),
            )
        )
    if len({n.device for n in nics}) != len(nics):
        raise v.bad(f"{f}.nics", "a device is listed twice")
    eips = tuple(
        parse_eip(e, f"{f}.eips[{i}]")
        for i, e in enumerate(v.items(d.get("eips", []), f"{f}.eips", max_items=4096))
    )
    if len({e.vip for e in eips}) != len(eips) or len({e.vm_ip for e in eips}) != len(eips):
        raise v.bad(f"{f}.eips", "an EIP or VM address is listed twice")
    bridges = tuple(
        sorted(
            {
                v.ifname(b, f"{f}.vmBridges")
                for b in v.items(d.get("vmBridges", []), f"{f}.vmBridges")
            }
        )
    )
    return FirewallSpec(tuple(nics), eips, bridges)


def parse_eip(raw: Any, f: str) -> Eip:
    """An EIP: ``vipIp``, ``vmIp`` and, to route it, optional ``bridgeName`` + ``prefixLen``
    (the VIP's side) and ``vmBridge`` + ``vmGateway`` (the VM's side)."""
    d = v.obj(raw, f)
    opt = {k: d.get(k) for k in ("bridgeName", "prefixLen", "vmBridge", "vmGateway", "vmDevice")}
    return Eip(
        vip=v.ipv4(d.get("vipIp"), f"{f}.vipIp"),
        vm_ip=v.ipv4(d.get("vmIp"), f"{f}.vmIp"),
        bridge=None
        if opt["bridgeName"] is None
        else v.ifname(opt["bridgeName"], f"{f}.bridgeName"),
        prefix=None
        if opt["prefixLen"] is None
        else v.integer(opt["prefixLen"], f"{f}.prefixLen", lo=1, hi=32),
        vm_bridge=None if opt["vmBridge"] is None else v.ifname(opt["vmBridge"], f"{f}.vmBridge"),
        gateway=None if opt["vmGateway"] is None else v.ipv4(opt["vmGateway"], f"{f}.vmGateway"),
        vm_device=None if opt["vmDevice"] is None else v.ifname(opt["vmDevice"], f"{f}.vmDevice"),
    )


# --- expression helpers (libnftables JSON schema) -------------------------------------------


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _addr(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _jump(chain: str) -> Json:
    return {"jump": {"target": chain}}


def _family(version: int) -> str:
    return "ip" if version == 4 else "ip6"


ACCEPT: Json = {"accept": None}
DROP: Json = {"drop": None}
RETURN: Json = {"return": None}
ARP = _match(_payload("ether", "type"), "arp")


def _dhcp(client_to_server: bool) -> list[Json]:
    sport, dport = (68, 67) if client_to_server else (67, 68)
    return [
        _match(_meta("l4proto"), "udp"),
        _match(_payload("udp", "sport"), sport),
        _match(_payload("udp", "dport"), dport),
    ]


def rule_exprs(rule: Rule) -> list[Json]:
    """Match expressions for one SG rule (the verdict is added by the caller)."""
    fam = _family(rule.cidr.version)
    field = "saddr" if rule.direction == "Ingress" else "daddr"
    exprs: list[Json] = []
    if rule.cidr.prefixlen == 0:
        exprs.append(_match(_meta("nfproto"), "ipv4" if fam == "ip" else "ipv6"))
    else:
        exprs.append(_match(_payload(fam, field), _addr(rule.cidr)))
    if rule.protocol == "ICMP":
        exprs.append(_match(_meta("l4proto"), "icmp" if fam == "ip" else "ipv6-icmp"))
    elif rule.protocol in ("TCP", "UDP"):
        proto = rule.protocol.lower()
        exprs.append(_match(_meta("l4proto"), proto))
        if rule.ports is not None:
            lo, hi = rule.ports
            exprs.append(_match(_payload(proto, "dport"), lo if lo == hi else {"range": [lo, hi]}))
    return exprs


# --- document ----------------------------------------------------------------------------------


class _Doc:
    def __init__(self) -> None:
        self.items: list[Json] = []

    def table(self, family: str, name: str) -> None:
        t = {"table": {"family": family, "name": name}}
        # add-then-delete-then-add: a fresh table even if it did not exist, in one transaction
        self.items += [{"add": t}, {"delete": t}, {"add": t}]

    def chain(self, family: str, table: str, name: str, **base: Any) -> None:
        self.items.append(
            {"add": {"chain": {"family": family, "table": table, "name": name, **base}}}
        )

    def rule(self, family: str, table: str, chain: str, *expr: Json) -> None:
        self.items.append(
            {
                "add": {
                    "rule": {"family": family, "table": table, "chain": chain, "expr": list(expr)}
                }
            }
        )


def _guard(doc: _Doc, nics: tuple[NicRules, ...]) -> None:
    """L2 anti-spoofing per guarded port (bridge family; needs no conntrack)."""
    fam, tbl = "bridge", FILTER_TABLE
    doc.table(fam, tbl)
    doc.chain(fam, tbl, "forward", type="filter", hook="forward", prio=-200, policy="accept")
    for i in range(len(nics)):  # a jump's target must exist before the jump
        doc.chain(fam, tbl, f"guard-{i}")
    for i, nic in enumerate(nics):
        doc.rule(fam, tbl, "forward", _match(_meta("iifname"), nic.device), _jump(f"guard-{i}"))
    for i, nic in enumerate(nics):
        chain = f"guard-{i}"
        if nic.mac:
            doc.rule(fam, tbl, chain, _match(_payload("ether", "saddr"), nic.mac, "!="), DROP)
        doc.rule(fam, tbl, chain, ARP, RETURN)
        doc.rule(fam, tbl, chain, *_dhcp(client_to_server=True), RETURN)
        if nic.ip is not None:
            f = _family(nic.ip.version)
            doc.rule(fam, tbl, chain, _match(_meta("protocol"), f),
                     _match(_payload(f, "saddr"), str(nic.ip), "!="), DROP)  # fmt: skip


def _routed(doc: _Doc, eips: tuple[Eip, ...], vm_bridges: tuple[str, ...]) -> None:
    """While the host routes EIPs: into a VM bridge only what is DNAT-ed to an EIP, out of
    one only from an address with an EIP (bridged traffic has the same in and out bridge)."""
    if not eips:
        return
    fam, tbl = "inet", FILTER_TABLE
    doc.chain(fam, tbl, "routed-in")  # ct status is a bitmask: test the flag, else drop
    doc.rule(fam, tbl, "routed-in", _match({"ct": {"key": "status"}}, "dnat", "in"), RETURN)
    doc.rule(fam, tbl, "routed-in", DROP)
    vm_ips = sorted(str(e.vm_ip) for e in eips)
    for br in vm_bridges:
        into = (_match(_meta("oifname"), br), _match(_meta("iifname"), br, "!="))
        out = (_match(_meta("iifname"), br), _match(_meta("oifname"), br, "!="))
        doc.rule(fam, tbl, "forward", *into, _jump("routed-in"))
        doc.rule(fam, tbl, "forward", *out, _match(_meta("nfproto"), "ipv6"), DROP)
        doc.rule(fam, tbl, "forward", *out,
                 _match(_payload("ip", "saddr"), {"set": vm_ips}, "!="), DROP)  # fmt: skip


def _gateway_arp(doc: _Doc, eips: tuple[Eip, ...]) -> None:
    """The host stands in for an L3's gateway towards the taps of VMs with EIPs only: it
    answers no one else's ARP for it, its own ARP for it goes to those taps only, and those
    VMs' ARP for it stays on the host (a real router on the L2 keeps serving the rest)."""
    taps: dict[str, set[str]] = {}
    for e in eips:
        if e.bridge and e.prefix and e.gateway is not None and e.vm_device:
            taps.setdefault(str(e.gateway), set()).add(e.vm_device)
    if not taps:
        return
    fam, tbl = "bridge", FILTER_TABLE
    doc.chain(fam, tbl, "input", type="filter", hook="input", prio=-200, policy="accept")
    doc.chain(fam, tbl, "output", type="filter", hook="output", prio=-200, policy="accept")
    for gw, devs in sorted(taps.items()):
        names = {"set": sorted(devs)}
        doc.rule(fam, tbl, "input", ARP, _match(_payload("arp", "daddr ip"), gw),
                 _match(_meta("iifname"), names, "!="), DROP)  # fmt: skip
        doc.rule(fam, tbl, "output", ARP, _match(_payload("arp", "saddr ip"), gw),
                 _match(_meta("oifname"), names, "!="), DROP)  # fmt: skip
        doc.rule(fam, tbl, "forward", ARP, _match(_payload("arp", "daddr ip"), gw),
                 _match(_meta("iifname"), names), DROP)  # fmt: skip


def _filter(
    doc: _Doc,
    nics: tuple[NicRules, ...],
    eips: tuple[Eip, ...] = (),
    vm_bridges: tuple[str, ...] = (),
) -> None:
    """Stateful SG rules (inet family; bridged traffic arrives through br_netfilter)."""
    fam, tbl = "inet", FILTER_TABLE
    doc.table(fam, tbl)
    doc.chain(fam, tbl, "forward", type="filter", hook="forward", prio=0, policy="accept")
    established = _match({"ct": {"key": "state"}}, ["established", "related"])
    doc.rule(fam, tbl, "forward", established, ACCEPT)
    _routed(doc, eips, vm_bridges)
    guarded = [(i, nic, nic.ip) for i, nic in enumerate(nics) if nic.ip is not None]
    for i, _nic, _ip in guarded:
        doc.chain(fam, tbl, f"out-{i}")
        doc.chain(fam, tbl, f"in-{i}")
    # egress of the sender first: its chain *returns* allowed traffic so that the receiver's
    # ingress chain still runs when both VMs are guarded
    for i, _nic, ip in guarded:
        doc.rule(fam, tbl, "forward", _match(_payload(_family(ip.version), "saddr"), str(ip)),
                 _jump(f"out-{i}"))  # fmt: skip
    for i, _nic, ip in guarded:
        doc.rule(fam, tbl, "forward", _match(_payload(_family(ip.version), "daddr"), str(ip)),
                 _jump(f"in-{i}"))  # fmt: skip
    for i, nic, _ip in guarded:
        out, inn = f"out-{i}", f"in-{i}"
        egress = [r for r in nic.rules if r.direction == "Egress"]
        for r in egress:
            doc.rule(fam, tbl, out, *rule_exprs(r), RETURN)
        doc.rule(fam, tbl, out, DROP if egress else RETURN)
        for r in nic.rules:
            if r.direction == "Ingress":
                doc.rule(fam, tbl, inn, *rule_exprs(r), ACCEPT)
        doc.rule(fam, tbl, inn, DROP)


def _nat(doc: _Doc, eips: tuple[Eip, ...]) -> None:
    fam, tbl = "ip", NAT_TABLE
    doc.table(fam, tbl)
    doc.chain(fam, tbl, "prerouting", type="nat", hook="prerouting", prio=-100, policy="accept")
    doc.chain(fam, tbl, "postrouting", type="nat", hook="postrouting", prio=100, policy="accept")
    for e in eips:
        doc.rule(fam, tbl, "prerouting", _match(_payload("ip", "daddr"), str(e.vip)),
                 {"dnat": {"addr": str(e.vm_ip)}})  # fmt: skip
        doc.rule(fam, tbl, "postrouting", _match(_payload("ip", "saddr"), str(e.vm_ip)),
                 {"snat": {"addr": str(e.vip)}})  # fmt: skip


def build(spec: FirewallSpec) -> Json:
    """The whole nftables JSON document for this host's SG rules and EIPs."""
    doc = _Doc()
    doc.items.append({"metainfo": {"json_schema_version": 1}})
    _guard(doc, spec.nics)
    _gateway_arp(doc, spec.eips)
    _filter(doc, spec.nics, spec.eips, spec.vm_bridges)
    _nat(doc, spec.eips)
    return {"nftables": doc.items}


def apply(spec: FirewallSpec, executor: Executor, *, nft: str = "nft") -> dict[str, Any]:
    """Load the document atomically; nothing changes if nft rejects any part of it."""
    doc = build(spec)
    # bridged IPv4/IPv6 must traverse the inet forward hook for the stateful rules
    for key in BRIDGE_SYSCTLS:
        executor.run(["sysctl", "-q", "-w", f"{key}=1"])
    executor.run([nft, "-j", "-f", "-"], stdin=json.dumps(doc))
    return {
        "nics": len(spec.nics),
        "rules": sum(len(n.rules) for n in spec.nics),
        "eips": len(spec.eips),
    }
