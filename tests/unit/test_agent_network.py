"""Host networking builders: bridge argv lists, dnsmasq files, the nftables JSON document.

Everything runs through a RecordingExecutor, so the tests see exactly which argv lists would
run (never a shell string). Two tests check the output against the real tools when present:
``nft -c`` (as root) and ``dnsmasq --test``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from agent.network import bridge, dhcp, firewall
from agent.network.executor import RecordingExecutor
from tests.conftest import need
from zmn.api.errors import Conflict, InvalidArgument

L3 = "3" * 32


def link(name: str, *, up: bool = True, kind: str | None = None, master: str | None = None,
         vlan: int | None = None, mtu: int = 1500) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"ifname": name, "flags": ["UP"] if up else [], "mtu": mtu}
    if kind:
        out["linkinfo"] = {"info_kind": kind}
        if vlan is not None:
            out["linkinfo"]["info_data"] = {"protocol": "802.1Q", "id": vlan}
    if master:
        out["master"] = master
    return out


# --- bridge ----------------------------------------------------------------------------------


def test_novlan_bridge_on_a_bare_interface():
    spec = bridge.parse_l2({"bridgeName": "br_eth1", "physicalInterface": "eth1"})
    assert bridge.plan(spec, [link("eth1", up=False)]) == [
        ["ip", "link", "add", "name", "br_eth1", "type", "bridge"],
        ["ip", "link", "set", "dev", "eth1", "master", "br_eth1"],
        ["ip", "link", "set", "dev", "eth1", "up"],
        ["ip", "link", "set", "dev", "br_eth1", "up"],
    ]


def test_novlan_moves_addresses_and_gateway_routes_to_the_bridge():
    spec = bridge.parse_l2({"bridgeName": "br_eth0", "physicalInterface": "eth0"})
    addrs = [{"ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "192.0.2.2", "prefixlen": 24},
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
    ]}]  # fmt: skip
    routes = [
        {"dst": "default", "gateway": "192.0.2.1"},
        {"dst": "192.0.2.0/24", "protocol": "kernel", "scope": "link"},
        {"dst": "198.51.100.0/24", "gateway": "192.0.2.254"},
    ]
    cmds = bridge.plan(spec, [link("eth0")], addrs, routes, ip="/sbin/ip")
    assert cmds == [
        ["/sbin/ip", "link", "add", "name", "br_eth0", "type", "bridge"],
        ["/sbin/ip", "link", "set", "dev", "eth0", "master", "br_eth0"],
        ["/sbin/ip", "link", "set", "dev", "br_eth0", "up"],
        ["/sbin/ip", "addr", "del", "192.0.2.2/24", "dev", "eth0"],
        ["/sbin/ip", "addr", "add", "192.0.2.2/24", "dev", "br_eth0"],
        ["/sbin/ip", "route", "replace", "default", "via", "192.0.2.1", "dev", "br_eth0"],
        ["/sbin/ip", "route", "replace", "198.51.100.0/24", "via", "192.0.2.254", "dev", "br_eth0"],
    ]


def test_vlan_bridge_through_a_subinterface():
    spec = bridge.parse_l2({"bridgeName": "br_eth1_100", "physicalInterface": "eth1", "vlan": 100})
    assert spec.port == "eth1.100"
    assert bridge.plan(spec, [link("eth1")]) == [
        ["ip", "link", "add", "link", "eth1", "name", "eth1.100", "type", "vlan", "id", "100"],
        ["ip", "link", "add", "name", "br_eth1_100", "type", "bridge"],
        ["ip", "link", "set", "dev", "eth1.100", "master", "br_eth1_100"],
        ["ip", "link", "set", "dev", "eth1.100", "up"],
        ["ip", "link", "set", "dev", "br_eth1_100", "up"],
    ]


def test_existing_bridge_needs_nothing():
    spec = bridge.parse_l2({"bridgeName": "br_eth1_100", "physicalInterface": "eth1", "vlan": 100})
    links = [
        link("eth1"),
        link("eth1.100", kind="vlan", vlan=100, master="br_eth1_100"),
        link("br_eth1_100", kind="bridge"),
    ]
    assert bridge.plan(spec, links) == []


def test_mtu_is_set_where_it_differs():
    spec = bridge.parse_l2({"bridgeName": "br0", "physicalInterface": "eth1", "mtu": 9000})
    links = [link("eth1", mtu=9000), link("br0", kind="bridge")]
    cmds = bridge.plan(spec, links)
    assert ["ip", "link", "set", "dev", "br0", "mtu", "9000"] in cmds
    assert ["ip", "link", "set", "dev", "eth1", "mtu", "9000"] not in cmds


@pytest.mark.parametrize(
    ("links", "match"),
    [
        ([link("eth1"), link("eth1.100", kind="vlan", vlan=200)], "not VLAN 100"),
        ([link("eth1"), link("eth1.100", kind="vlan", vlan=100, master="br_other")], "port of"),
        ([link("eth1"), link("br_eth1_100", kind="vlan", vlan=5)], "not a bridge"),
    ],
)
def test_conflicts_are_refused_not_overwritten(links, match):
    spec = bridge.parse_l2({"bridgeName": "br_eth1_100", "physicalInterface": "eth1", "vlan": 100})
    with pytest.raises(Conflict, match=match):
        bridge.plan(spec, links)


def test_missing_physical_interface():
    spec = bridge.parse_l2({"bridgeName": "br0", "physicalInterface": "eth9"})
    with pytest.raises(InvalidArgument, match="no interface eth9"):
        bridge.plan(spec, [link("eth0")])


@pytest.mark.parametrize(
    "raw",
    [
        {"bridgeName": "br0; reboot", "physicalInterface": "eth0"},
        {"bridgeName": "br0", "physicalInterface": "eth0 up"},
        {"bridgeName": "br0", "physicalInterface": "--help"},
        {"bridgeName": "br0", "physicalInterface": "eth0", "vlan": 4095},
        {"bridgeName": "br0", "physicalInterface": "eth0", "vlan": "100"},
        {"bridgeName": "br0", "physicalInterface": "enp0s31f6long", "vlan": 100},  # > 15 chars
        {"bridgeName": "eth0", "physicalInterface": "eth0"},
    ],
)
def test_bad_l2_specs_are_rejected(raw):
    with pytest.raises(InvalidArgument):
        bridge.parse_l2(raw)


def test_ensure_queries_then_runs_the_plan_as_argv_lists():
    ex = RecordingExecutor(
        outputs={
            ("ip", "-j", "-d", "link", "show"): json.dumps([link("eth1")]),
            ("ip", "-j", "addr", "show"): json.dumps([{"ifname": "eth1", "addr_info": []}]),
            ("ip", "-j", "route", "show"): "[]",
        }
    )
    spec = bridge.parse_l2({"bridgeName": "br_eth1", "physicalInterface": "eth1"})
    ran = bridge.ensure(spec, ex)
    assert ex.commands[:3] == [
        ["ip", "-j", "-d", "link", "show"],
        ["ip", "-j", "addr", "show", "dev", "eth1"],
        ["ip", "-j", "route", "show", "dev", "eth1"],
    ]
    assert ex.commands[3:] == ran and len(ran) == 3
    assert all(isinstance(a, str) for argv in ex.commands for a in argv)


# --- dhcp ------------------------------------------------------------------------------------


def l3(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "l3Uuid": L3,
        "bridgeName": "br_eth1_100",
        "cidr": "10.0.0.0/24",
        "serverIp": "10.0.0.2",
        "gateway": "10.0.0.1",
        "dns": ["192.0.2.53"],
        "dnsDomain": "cloud.example",
        "hosts": [
            {"mac": "52:54:00:00:00:0b", "ip": "10.0.0.11", "hostname": "web-2"},
            {"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10", "hostname": "web-1"},
            {"mac": "52:54:00:00:00:0c", "ip": "10.0.0.12"},
        ],
    }
    base.update(over)
    return base


def test_dnsmasq_files():
    spec = dhcp.parse_l3(l3())
    paths = dhcp.paths_for("/var/lib/zagent", L3)
    conf = dhcp.render_conf(spec, paths).splitlines()
    assert conf[1:] == [
        "interface=br_eth1_100",
        "bind-dynamic",
        "except-interface=lo",
        "listen-address=10.0.0.2",
        f"pid-file=/var/lib/zagent/dnsmasq/{L3}/dnsmasq.pid",
        f"dhcp-leasefile=/var/lib/zagent/dnsmasq/{L3}/leases",
        f"dhcp-hostsfile=/var/lib/zagent/dnsmasq/{L3}/hosts",
        "no-hosts",
        "no-resolv",
        "dhcp-ignore=tag:!known",
        "dhcp-range=set:l3,10.0.0.0,static,255.255.255.0,86400s",
        "dhcp-option=tag:l3,option:dns-server,10.0.0.2",
        "dhcp-option=tag:l3,option:router,10.0.0.1",
        "domain=cloud.example",
        "dhcp-option=tag:l3,option:domain-name,cloud.example",
        "server=192.0.2.53",
    ]
    assert dhcp.render_hosts(spec) == (
        "52:54:00:00:00:0a,10.0.0.10,web-1\n"
        "52:54:00:00:00:0b,10.0.0.11,web-2\n"
        "52:54:00:00:00:0c,10.0.0.12\n"
    )


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10",
                     "hostname": "a\nserver=6.6.6.6"}]},
         "l3.hosts[0].hostname"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10", "hostname": "a,b"}]},
         "l3.hosts[0].hostname"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10", "hostname": "a.b"}]},
         "l3.hosts[0].hostname"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10", "hostname": "-a"}]},
         "l3.hosts[0].hostname"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a,set:x", "ip": "10.0.0.10"}]}, "l3.hosts[0].mac"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.1.10"}]}, "l3.hosts[0].ip"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.255"}]}, "l3.hosts[0].ip"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.2"}]}, "l3.hosts[0]"),
        ({"hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10"},
                    {"mac": "52:54:00:00:00:0a", "ip": "10.0.0.11"}]}, "l3.hosts[1]"),
        ({"cidr": "10.0.0.0/31"}, "l3.cidr"),
        ({"cidr": "fd00::/64"}, "l3.cidr"),
        ({"serverIp": "10.9.0.2"}, "l3.serverIp"),
        ({"gateway": "10.0.0.1\ndhcp-option=3"}, "l3.gateway"),
        ({"dnsDomain": "bad domain"}, "l3.dnsDomain"),
        ({"l3Uuid": "../../etc"}, "l3.l3Uuid"),
        ({"bridgeName": "br0\n"}, "l3.bridgeName"),
        ({"leaseTime": 5}, "l3.leaseTime"),
    ],
)  # fmt: skip
def test_bad_dhcp_specs_are_rejected(over, field):
    with pytest.raises(InvalidArgument) as exc:
        dhcp.parse_l3(l3(**over))
    assert exc.value.field == field


def _apply(ex: RecordingExecutor, spec: dhcp.L3Dhcp) -> dict[str, Any]:
    return dhcp.apply(spec, ex, "/st", sleep=lambda _s: None)


def test_dhcp_apply_starts_then_reloads_then_restarts():
    ex = RecordingExecutor()
    paths = dhcp.paths_for("/st", L3)
    first = _apply(ex, dhcp.parse_l3(l3()))
    assert first["action"] == "started" and first["reservations"] == 3
    assert ex.commands == [
        ["ip", "addr", "replace", "10.0.0.2/24", "dev", "br_eth1_100"],
        ["dnsmasq", f"--conf-file={paths.conf}"],
    ]
    assert set(ex.files) == {paths.conf, paths.hosts}
    # dnsmasq is now running with our config
    ex.files[paths.pid] = "4242\n"
    ex.files["/proc/4242/cmdline"] = f"dnsmasq\0--conf-file={paths.conf}\0"
    ex.commands.clear()
    assert _apply(ex, dhcp.parse_l3(l3()))["action"] == "none"
    assert ex.commands == [["ip", "addr", "replace", "10.0.0.2/24", "dev", "br_eth1_100"]]
    ex.commands.clear()
    assert _apply(ex, dhcp.parse_l3(l3(hosts=[])))["action"] == "reloaded"
    assert ex.commands[-1] == ["kill", "-HUP", "4242"]
    assert ex.files[paths.hosts] == ""
    ex.commands.clear()
    assert _apply(ex, dhcp.parse_l3(l3(dns=[])))["action"] == "restarted"
    assert ex.commands[1] == ["kill", "-TERM", "4242"]
    assert ex.commands[-1] == ["dnsmasq", f"--conf-file={paths.conf}"]


def test_a_lease_on_a_reserved_address_for_another_mac_is_dropped_with_a_restart():
    """A VM destroyed on this host left its lease; the address goes to a new VM's MAC."""
    ex = RecordingExecutor()
    paths = dhcp.paths_for("/st", L3)
    spec = dhcp.parse_l3(l3())
    reserved = next(iter(spec.hosts))
    ex.files[paths.pid] = "4242\n"
    ex.files["/proc/4242/cmdline"] = f"dnsmasq\0--conf-file={paths.conf}\0"
    _apply(ex, spec)  # files in place, dnsmasq running
    stale = f"1900000000 02:00:00:00:00:99 {reserved.ip} old *\n"
    mine = f"1900000000 {reserved.mac} {reserved.ip} new *\n"
    other = "1900000000 02:00:00:00:00:98 10.0.0.250 gone *\n"  # not reserved: harmless
    ex.files[paths.leases] = stale + other
    ex.commands.clear()
    out = _apply(ex, spec)
    assert (out["action"], out["leasesDropped"]) == ("restarted", 1)
    assert ex.commands[1] == ["kill", "-TERM", "4242"]
    assert ex.commands[-1] == ["dnsmasq", f"--conf-file={paths.conf}"]
    assert ex.files[paths.leases] == other
    # the reserved MAC's own lease is no conflict: nothing restarts
    ex.files[paths.leases] = mine + other
    ex.commands.clear()
    out = _apply(ex, spec)
    assert (out["action"], out["leasesDropped"]) == ("none", 0)
    assert ex.files[paths.leases] == mine + other


def test_a_lease_of_a_reserved_address_held_by_another_mac_is_dropped_and_dnsmasq_restarted():
    """A host back from the dead still leases a moved VM's address: the VM reserved it now
    must get it (dnsmasq reads the lease file only when it starts)."""
    ex = RecordingExecutor()
    paths = dhcp.paths_for("/st", L3)
    spec = dhcp.parse_l3(l3())
    _apply(ex, spec)
    ex.files[paths.pid] = "4242\n"
    ex.files["/proc/4242/cmdline"] = f"dnsmasq\0--conf-file={paths.conf}\0"
    mine = spec.hosts[0]
    ok = f"1796630843 {mine.mac} {mine.ip} vm1 *\n"
    other = "1796630843 52:54:00:99:99:99 10.0.0.200 gone *\n"  # an address not reserved
    ex.files[paths.leases] = ok + other
    ex.commands.clear()
    assert _apply(ex, spec)["action"] == "none"  # nothing stale: left alone
    stale = f"1796630843 fa:d8:6a:ec:3c:12 {mine.ip} moved-away *\n"
    ex.files[paths.leases] = ok.replace(str(mine.ip), "10.0.0.201") + stale + other
    ex.commands.clear()
    assert _apply(ex, spec)["action"] == "restarted"
    assert ex.files[paths.leases] == ok.replace(str(mine.ip), "10.0.0.201") + other
    assert ex.commands[1] == ["kill", "-TERM", "4242"]
    assert ex.commands[-1] == ["dnsmasq", f"--conf-file={paths.conf}"]


def test_a_reused_pid_is_not_signalled():
    ex = RecordingExecutor()
    paths = dhcp.paths_for("/st", L3)
    ex.files[paths.pid] = "77"
    ex.files["/proc/77/cmdline"] = "sshd\0"
    _apply(ex, dhcp.parse_l3(l3()))
    assert not any(c[0] == "kill" for c in ex.commands)
    assert ex.commands[-1][0] == "dnsmasq"


def test_dnsmasq_accepts_the_generated_config(tmp_path):
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    need(os.path.exists(exe), "dnsmasq is not installed (dnsmasq-base)")
    spec = dhcp.parse_l3(l3())
    paths = dhcp.paths_for(str(tmp_path), L3)
    os.makedirs(paths.directory)
    with open(paths.conf, "w") as f:
        f.write(dhcp.render_conf(spec, paths))
    with open(paths.hosts, "w") as f:
        f.write(dhcp.render_hosts(spec))
    res = subprocess.run([exe, "--test", f"--conf-file={paths.conf}"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "syntax check OK" in res.stderr + res.stdout


# --- firewall --------------------------------------------------------------------------------


FW = {
    "nics": [
        {"device": "vnic1.0", "mac": "52:54:00:00:00:01", "ip": "10.0.0.5", "rules": [
            {"type": "Ingress", "protocol": "TCP", "startPort": 22, "endPort": 22,
             "allowedCidr": "0.0.0.0/0"},
            {"type": "Ingress", "protocol": "udp", "startPort": 1000, "endPort": 2000,
             "allowedCidr": "10.1.0.0/16"},
            {"type": "Ingress", "protocol": "ICMP", "allowedCidr": "192.168.1.7/32"},
            {"type": "Egress", "protocol": "ALL", "allowedCidr": "10.0.0.0/8"},
        ]},
        {"device": "vnic2.0", "mac": "52:54:00:00:00:02", "ip": "10.0.0.6", "rules": []},
    ],
    "eips": [{"vipIp": "172.16.0.10", "vmIp": "10.0.0.5"}],
}  # fmt: skip


def _rules(doc: dict[str, Any], family: str, chain: str) -> list[list[dict[str, Any]]]:
    return [
        i["add"]["rule"]["expr"]
        for i in doc["nftables"]
        if "rule" in i.get("add", {})
        and i["add"]["rule"]["family"] == family
        and i["add"]["rule"]["chain"] == chain
    ]


def test_firewall_document_structure():
    doc = firewall.build(firewall.parse(FW))
    items = doc["nftables"]
    tables = [(k, i[k]["table"]["family"]) for i in items for k in i if "table" in i[k]]
    assert tables == [
        ("add", "bridge"), ("delete", "bridge"), ("add", "bridge"),
        ("add", "inet"), ("delete", "inet"), ("add", "inet"),
        ("add", "ip"), ("delete", "ip"), ("add", "ip"),
    ]  # fmt: skip
    fwd = _rules(doc, "inet", "forward")
    assert fwd[0][-1] == {"accept": None}
    assert fwd[0][0]["match"]["right"] == ["established", "related"]
    # egress jumps come before ingress jumps
    assert [r[-1]["jump"]["target"] for r in fwd[1:]] == ["out-0", "out-1", "in-0", "in-1"]
    ssh, udp, icmp = _rules(doc, "inet", "in-0")[:3]
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                      "right": 22}} in ssh  # fmt: skip
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                      "right": {"prefix": {"addr": "10.1.0.0", "len": 16}}}} in udp  # fmt: skip
    assert {"range": [1000, 2000]} in [e["match"]["right"] for e in udp if "match" in e]
    assert icmp[0]["match"]["right"] == "192.168.1.7"
    assert _rules(doc, "inet", "in-0")[-1] == [{"drop": None}]
    assert _rules(doc, "inet", "out-0")[-1] == [{"drop": None}]  # egress rules -> default drop
    assert _rules(doc, "inet", "out-1") == [[{"return": None}]]  # none -> all egress allowed
    guard = _rules(doc, "bridge", "guard-0")
    assert guard[0] == [
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                   "right": "52:54:00:00:00:01"}},
        {"drop": None},
    ]  # fmt: skip
    pre = _rules(doc, "ip", "prerouting")
    post = _rules(doc, "ip", "postrouting")
    assert pre == [
        [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": "172.16.0.10",
                }
            },
            {"dnat": {"addr": "10.0.0.5"}},
        ]
    ]
    assert post[0][-1] == {"snat": {"addr": "172.16.0.10"}}  # fmt: skip


def test_firewall_apply_pipes_json_to_nft_and_sets_br_netfilter():
    ex = RecordingExecutor()
    out = firewall.apply(firewall.parse(FW), ex, nft="/usr/sbin/nft")
    assert out == {"nics": 2, "rules": 4, "eips": 1}
    assert ex.commands == [
        ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"],
        ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-ip6tables=1"],
        ["/usr/sbin/nft", "-j", "-f", "-"],
    ]
    assert json.loads(ex.stdins[-1]) == firewall.build(firewall.parse(FW))


def test_hostile_values_stay_json_values():
    spec = {"nics": [{"device": "vnic1.0", "ip": "10.0.0.5", "rules": []}]}
    doc = json.dumps(firewall.build(firewall.parse(spec)))
    assert '"vnic1.0"' in doc
    for bad in ('vnic"; flush ruleset', "vnic1.0 accept", "a" * 16):
        with pytest.raises(InvalidArgument):
            firewall.parse({"nics": [{"device": bad, "rules": []}]})


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"type": "Inbound", "protocol": "TCP"}, "type"),
        ({"type": "Ingress", "protocol": "SCTP"}, "protocol"),
        ({"type": "Ingress", "protocol": "TCP", "startPort": 0}, "startPort"),
        ({"type": "Ingress", "protocol": "TCP", "startPort": 80, "endPort": 22}, "endPort"),
        ({"type": "Ingress", "protocol": "TCP", "startPort": "22"}, "startPort"),
        ({"type": "Ingress", "allowedCidr": "10.0.0.0/33"}, "allowedCidr"),
        ({"type": "Ingress", "allowedCidr": "10.0.0.0/8 accept"}, "allowedCidr"),
    ],
)
def test_bad_rules_are_rejected(rule, field):
    with pytest.raises(InvalidArgument) as exc:
        firewall.parse({"nics": [{"device": "vnic1.0", "ip": "10.0.0.5", "rules": [rule]}]})
    assert exc.value.field == f"firewall.nics[0].rules[0].{field}"


def test_duplicate_eips_are_rejected():
    eips = [
        {"vipIp": "172.16.0.10", "vmIp": "10.0.0.5"},
        {"vipIp": "172.16.0.10", "vmIp": "10.0.0.6"},
    ]
    with pytest.raises(InvalidArgument):
        firewall.parse({"eips": eips})


@pytest.mark.root
def test_nft_accepts_the_document():
    nft = shutil.which("nft") or "/usr/sbin/nft"
    need(os.geteuid() == 0 and os.path.exists(nft), "needs root and nft (nftables)")
    doc = json.dumps(firewall.build(firewall.parse(FW)))
    res = subprocess.run([nft, "-c", "-j", "-f", "-"], input=doc, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
