"""The network state of this host's VMs, kept by the agent: DHCP reservations, SG rules, EIPs.

The node tells the agent, per VM, what the VM's NICs need on this host
(``POST /v1/network/vm``)::

    {"uuid": "<vm>",
     "l3s": [{"l3Uuid", "bridgeName", "cidr", "serverIp", "gateway", "dns", "dnsDomain"}],
     "nics": [{"mac", "ip", "l3Uuid", "device", "hostname"}],
     "eips": [{"vipIp", "vmIp", "bridgeName", "prefixLen"}]}

(an EIP's ``bridgeName`` and ``prefixLen``, the VIP's L2 bridge and L3 prefix, make the host
route it: see :mod:`eipnet`; without them only the NAT rules are written)

and, per NIC, its security-group rules (``POST /v1/network/nic/rules`` ``{"mac", "rules"}``;
an empty list clears them). ``POST /v1/network/vm/remove`` ``{"uuid"}`` drops a VM's
reservations, rules and EIPs. The agent merges all of it into one state, persisted in
``<state_dir>/network/state.json``, and re-applies from the whole state: the dnsmasq hosts
file of every L3 that changed (one dnsmasq per L3, stopped when its last reservation goes)
and the complete nftables document (one atomic transaction, see :mod:`firewall`).

Every change is checked in full before anything is touched: the candidate state is compiled
through the same parsers the single-purpose commands use (:func:`dhcp.parse_l3`,
:func:`firewall.parse`), so a bad value is a 400 naming its field and changes nothing. The
saved file is parsed the same way when read back. Values only ever reach dnsmasq's files as
validated MACs, addresses and RFC 1123 labels, and nftables as JSON values.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent import validate as v
from agent.network import dhcp, eipnet, firewall
from agent.network.executor import Executor

log = logging.getLogger("zagent.network")

L3_KEYS = ("l3Uuid", "bridgeName", "cidr", "serverIp", "gateway", "dns", "dnsDomain", "mtu",
           "leaseTime")  # fmt: skip
Json = dict[str, Any]


def _l3(raw: Any, f: str) -> Json:
    """An L3's DHCP settings (no reservations), validated and normalised."""
    d = v.obj(raw, f)
    spec = dhcp.parse_l3({**{k: d[k] for k in L3_KEYS if k in d}, "hosts": []}, f)
    out: Json = {
        "l3Uuid": spec.l3_uuid,
        "bridgeName": spec.bridge,
        "cidr": str(spec.network),
        "serverIp": str(spec.server_ip),
        "dns": [str(x) for x in spec.dns],
        "leaseTime": spec.lease_time,
    }
    if spec.gateway is not None:
        out["gateway"] = str(spec.gateway)
    if spec.domain is not None:
        out["dnsDomain"] = spec.domain
    if spec.mtu is not None:
        out["mtu"] = spec.mtu
    return out


def _nic(raw: Any, f: str, l3s: set[str]) -> Json:
    d = v.obj(raw, f)
    out: Json = {
        "mac": v.mac(d.get("mac"), f"{f}.mac"),
        "ip": str(v.ipv4(d.get("ip"), f"{f}.ip")),
        "l3Uuid": v.uuid(d.get("l3Uuid"), f"{f}.l3Uuid"),
        "device": v.ifname(d.get("device"), f"{f}.device"),
    }
    if out["l3Uuid"] not in l3s:
        raise v.bad(f"{f}.l3Uuid", "names no L3 of this request's l3s")
    if d.get("hostname") is not None:
        out["hostname"] = dhcp._label(d["hostname"], f)
    return out


def parse_vm(raw: Any, f: str = "vm") -> tuple[str, list[Json], Json]:
    """``/v1/network/vm``'s body: (VM UUID, its L3s' settings, its entry in the state)."""
    d = v.obj(raw, f)
    uuid = v.uuid(d.get("uuid"), f"{f}.uuid")
    l3s = [_l3(x, f"{f}.l3s[{i}]") for i, x in enumerate(v.items(d.get("l3s", []), f"{f}.l3s"))]
    known = {x["l3Uuid"] for x in l3s}
    nics = [
        _nic(x, f"{f}.nics[{i}]", known)
        for i, x in enumerate(v.items(d.get("nics", []), f"{f}.nics", max_items=32))
    ]
    ips = {n["ip"] for n in nics}
    eips = []
    for i, e in enumerate(v.items(d.get("eips", []), f"{f}.eips", max_items=32)):
        ef = f"{f}.eips[{i}]"
        parsed = firewall.parse_eip(e, ef)
        eip: Json = {"vipIp": str(parsed.vip), "vmIp": str(parsed.vm_ip)}
        if parsed.bridge is not None and parsed.prefix is not None:
            eip["bridgeName"], eip["prefixLen"] = parsed.bridge, parsed.prefix
        if eip["vmIp"] not in ips:
            raise v.bad(f"{ef}.vmIp", "is the address of none of this VM's NICs")
        eips.append(eip)
    return uuid, l3s, {"nics": nics, "eips": eips}


def parse_rules(raw: Any, f: str = "nic") -> tuple[str, list[Json]]:
    """``/v1/network/nic/rules``'s body: (MAC, rules in the firewall's wire form)."""
    d = v.obj(raw, f)
    mac = v.mac(d.get("mac"), f"{f}.mac")
    rules = []
    for i, r in enumerate(v.items(d.get("rules", []), f"{f}.rules")):
        rule = firewall.parse_rule(r, f"{f}.rules[{i}]")
        wire: Json = {"type": rule.direction, "protocol": rule.protocol,
                      "allowedCidr": str(rule.cidr)}  # fmt: skip
        if rule.ports is not None:
            wire["startPort"], wire["endPort"] = rule.ports
        rules.append(wire)
    return mac, rules


@dataclass
class Compiled:
    dhcp: dict[str, dhcp.L3Dhcp]  # by L3 UUID, only L3s with reservations
    firewall: firewall.FirewallSpec


def compile_state(state: Json) -> Compiled:
    """The dnsmasq and nftables specs of a whole state (raises InvalidArgument)."""
    l3s: dict[str, Json] = state.get("l3s", {})
    hosts: dict[str, list[Json]] = {}
    fw_nics: list[Json] = []
    eips: list[Json] = []
    rules: dict[str, list[Json]] = state.get("rules", {})
    for _uuid, vm in sorted(state.get("vms", {}).items()):
        by_ip = {n["ip"]: (l3s.get(n["l3Uuid"], {}), n["device"]) for n in vm.get("nics", [])}
        for nic in vm.get("nics", []):
            row = {"mac": nic["mac"], "ip": nic["ip"]}
            if nic.get("hostname"):
                row["hostname"] = nic["hostname"]
            hosts.setdefault(nic["l3Uuid"], []).append(row)
            if nic["mac"] in rules:
                fw_nics.append({"device": nic["device"], "mac": nic["mac"], "ip": nic["ip"],
                                "rules": rules[nic["mac"]]})  # fmt: skip
        for e in vm.get("eips", []):  # the VM side of a routed EIP comes from the NIC's L3
            l3, device = by_ip.get(e["vmIp"], ({}, None))
            side = {"vmBridge": l3.get("bridgeName"), "vmGateway": l3.get("gateway"),
                    "vmDevice": device}  # fmt: skip
            eips.append({**e, **{k: x for k, x in side.items() if x is not None}})
    specs = {
        l3: dhcp.parse_l3({**l3s[l3], "hosts": rows}, f"l3s[{l3}]")
        for l3, rows in sorted(hosts.items())
    }
    bridges = sorted({l3s[x]["bridgeName"] for x in hosts if x in l3s})
    fw = {"nics": fw_nics, "eips": eips, "vmBridges": bridges}
    return Compiled(specs, firewall.parse(fw, "firewall"))


def _evict(state: Json, uuid: str, entry: Json) -> list[str]:
    """Drop NICs of other VMs that hold one of ``entry``'s MACs or addresses (the node moved
    the address or the VM; its newest word wins). Returns the VMs touched."""
    macs = {n["mac"] for n in entry["nics"]}
    ips = {(n["l3Uuid"], n["ip"]) for n in entry["nics"]}
    vips = {e["vipIp"] for e in entry["eips"]}
    touched = []
    for other, vm in state["vms"].items():
        if other == uuid:
            continue
        keep = [n for n in vm["nics"] if n["mac"] not in macs and (n["l3Uuid"], n["ip"]) not in ips]
        keep_ips = {n["ip"] for n in keep}
        keep_eips = [e for e in vm["eips"] if e["vipIp"] not in vips and e["vmIp"] in keep_ips]
        if keep != vm["nics"] or keep_eips != vm["eips"]:
            log.warning("VM %s loses NICs/EIPs now given to VM %s", other, uuid)
            vm["nics"], vm["eips"] = keep, keep_eips
            touched.append(other)
    return touched


class HostNetwork:
    """The persisted state and its application; callers serialise (the agent's net lock)."""

    def __init__(
        self,
        executor: Executor,
        state_dir: str,
        *,
        dnsmasq: str = "dnsmasq",
        ip: str = "ip",
        nft: str = "nft",
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.executor = executor
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, "network", "state.json")
        self._dnsmasq = dnsmasq
        self._ip = ip
        self._nft = nft
        self._sleep = sleep
        self._applied_fw: Json | None = None  # last nftables document loaded by this process
        self.state = self._load()

    def _load(self) -> Json:
        raw = self.executor.read_file(self.path)
        empty: Json = {"l3s": {}, "vms": {}, "rules": {}}
        if not raw:
            return empty
        try:
            state = json.loads(raw)
            if not isinstance(state, dict):
                raise ValueError("not an object")
            state = {k: dict(state.get(k) or {}) for k in empty}
            compile_state(state)  # the file is input like any other
        except Exception as exc:
            log.error("ignoring unreadable network state %s: %s", self.path, exc)
            return empty
        return state

    def _save(self) -> None:
        self.executor.write_file(
            self.path, json.dumps(self.state, sort_keys=True, indent=1) + "\n", 0o600
        )

    # ----------------------------------------------------------------- commands

    def set_vm(self, body: Any) -> Json:
        uuid, l3s, entry = parse_vm(body)
        candidate = _copy(self.state)
        for l3 in l3s:
            candidate["l3s"][l3["l3Uuid"]] = l3
        candidate["vms"][uuid] = entry
        _evict(candidate, uuid, entry)
        out = self._commit(candidate)
        return {"uuid": uuid, "nics": len(entry["nics"]), "eips": len(entry["eips"]), **out}

    def remove_vm(self, body: Any) -> Json:
        uuid = v.uuid(v.obj(body, "body").get("uuid"), "uuid")
        candidate = _copy(self.state)
        gone = candidate["vms"].pop(uuid, None)
        for nic in (gone or {}).get("nics", []):
            candidate["rules"].pop(nic["mac"], None)
        out = self._commit(candidate)
        return {"uuid": uuid, "removed": gone is not None, **out}

    def set_rules(self, body: Any) -> Json:
        mac, rules = parse_rules(body)
        candidate = _copy(self.state)
        if rules:
            candidate["rules"][mac] = rules
        else:
            candidate["rules"].pop(mac, None)
        out = self._commit(candidate)
        return {"mac": mac, "rules": len(rules), **out}

    def reapply(self) -> None:
        """Apply the saved state again (at start: the host may have rebooted); best effort."""
        if not self.state["vms"]:
            return
        try:
            new = compile_state(self.state)
            for spec in new.dhcp.values():
                dhcp.apply(spec, self.executor, self.state_dir, dnsmasq=self._dnsmasq, ip=self._ip)
            if _nonempty(new.firewall):
                firewall.apply(new.firewall, self.executor, nft=self._nft)
                self._applied_fw = firewall.build(new.firewall)
            eipnet.apply(None, new.firewall, self.executor, ip=self._ip)
        except Exception as exc:
            log.error("re-applying the saved network state failed: %s", exc)

    def snapshot(self) -> Json:
        return _copy(self.state)

    # ----------------------------------------------------------------- applying

    def _commit(self, candidate: Json) -> Json:
        new = compile_state(candidate)  # raises before anything is touched
        old = compile_state(self.state)
        # L3s whose settings or reservations changed; an L3 left without VMs is dropped
        changed = sorted(
            l3
            for l3 in set(new.dhcp) | set(old.dhcp)
            if new.dhcp.get(l3) != old.dhcp.get(l3)
            or candidate["l3s"].get(l3) != self.state["l3s"].get(l3)
        )
        candidate["l3s"] = {k: x for k, x in candidate["l3s"].items() if k in new.dhcp}
        dhcp_actions = {}
        for l3 in changed:
            if l3 in new.dhcp:
                kw: Json = {"dnsmasq": self._dnsmasq, "ip": self._ip}
                if self._sleep is not None:
                    kw["sleep"] = self._sleep
                res = dhcp.apply(new.dhcp[l3], self.executor, self.state_dir, **kw)
                dhcp_actions[l3] = res["action"]
            else:
                dhcp_actions[l3] = self._stop_dhcp(old.dhcp[l3])
        doc = firewall.build(new.firewall)
        fw = "unchanged"
        if doc != self._applied_fw and (self._applied_fw is not None or _nonempty(new.firewall)
                                        or _nonempty(old.firewall)):  # fmt: skip
            firewall.apply(new.firewall, self.executor, nft=self._nft)
            self._applied_fw = doc
            fw = "applied"
        try:
            routed = eipnet.apply(old.firewall, new.firewall, self.executor, ip=self._ip)
        except Exception:
            if fw == "applied":  # back to the document of the state that stays
                firewall.apply(old.firewall, self.executor, nft=self._nft)
                self._applied_fw = firewall.build(old.firewall)
            raise
        self.state = candidate
        self._save()
        return {"dhcp": dhcp_actions, "firewall": fw, "eipAddresses": routed}

    def _stop_dhcp(self, spec: dhcp.L3Dhcp) -> str:
        paths = dhcp.paths_for(self.state_dir, spec.l3_uuid)
        pid = dhcp._running_pid(self.executor, paths)
        if pid is not None:
            self.executor.run(["kill", "-TERM", str(pid)], check=False)
        prefix = f"{spec.server_ip}/{spec.network.prefixlen}"
        self.executor.run([self._ip, "addr", "del", prefix, "dev", spec.bridge], check=False)
        self.executor.write_file(paths.hosts, "")
        return "stopped"


def _copy(state: Json) -> Json:
    copied: Json = json.loads(json.dumps(state))
    return copied


def _nonempty(spec: firewall.FirewallSpec) -> bool:
    return bool(spec.nics or spec.eips)
