"""Host networking against the real tools, inside a throw-away network namespace (root).

An executor that prefixes ``ip netns exec <ns>`` runs the agent's own argv lists in the
namespace, so bridges, VLAN subinterfaces, nftables tables and dnsmasq never touch the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.network import bridge, dhcp, firewall
from agent.network.executor import Result, SystemExecutor
from tests.conftest import need

pytestmark = pytest.mark.root
L3 = "7" * 32


class NetnsExecutor(SystemExecutor):
    """Runs every command inside network namespace ``ns`` (files are shared anyway)."""

    def __init__(self, ns: str) -> None:
        super().__init__()
        self.ns = ns
        self.commands: list[list[str]] = []

    def run(self, argv: list[str], *, stdin: str | None = None, check: bool = True) -> Result:
        self.commands.append(argv)
        return super().run(["ip", "netns", "exec", self.ns, *argv], stdin=stdin, check=check)


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def netns() -> Iterator[NetnsExecutor]:
    need(os.geteuid() == 0, "needs root (network namespaces)")
    need(shutil.which("ip") is not None, "needs iproute2")
    ns = f"zagent-{uuid.uuid4().hex[:8]}"
    _sh("ip", "netns", "add", ns)
    try:
        for dev in ("eth1", "eth2"):
            _sh("ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", f"{dev}p")
        _sh("ip", "-n", ns, "addr", "add", "192.0.2.50/24", "dev", "eth1")
        _sh("ip", "-n", ns, "link", "set", "eth1", "up")
        _sh("ip", "-n", ns, "link", "set", "eth1p", "up")
        _sh("ip", "-n", ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.1", "dev", "eth1")
        yield NetnsExecutor(ns)
    finally:
        for pid in _sh("ip", "netns", "pids", ns).split():
            os.kill(int(pid), 9)
        _sh("ip", "netns", "del", ns)


def _links(ex: NetnsExecutor) -> dict[str, dict]:
    return {x["ifname"]: x for x in json.loads(_sh("ip", "-n", ex.ns, "-j", "-d", "link", "show"))}


def test_novlan_bridge_takes_over_the_interface_and_its_addresses(netns):
    spec = bridge.parse_l2({"bridgeName": "br_eth1", "physicalInterface": "eth1"})
    assert bridge.ensure(spec, netns)
    links = _links(netns)
    assert links["br_eth1"]["linkinfo"]["info_kind"] == "bridge"
    assert links["eth1"]["master"] == "br_eth1" and "UP" in links["br_eth1"]["flags"]
    addrs = json.loads(_sh("ip", "-n", netns.ns, "-j", "addr", "show", "dev", "br_eth1"))
    assert [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"]
            if a["family"] == "inet"] == [("192.0.2.50", 24)]  # fmt: skip
    route = _sh("ip", "-n", netns.ns, "route", "show", "198.51.100.0/24")
    assert "via 192.0.2.1 dev br_eth1" in route
    netns.commands.clear()
    assert bridge.ensure(spec, netns) == []  # idempotent: only the queries ran
    assert all("-j" in argv for argv in netns.commands)


def test_vlan_bridge(netns):
    probe = subprocess.run(
        ["ip", "-n", netns.ns, "link", "add", "link", "eth2", "name", "probe.9", "type", "vlan",
         "id", "9"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        # a kernel feature, not something setup can install: skipped even under CI
        pytest.skip(f"kernel without 802.1Q VLAN support: {probe.stderr.strip()}")
    _sh("ip", "-n", netns.ns, "link", "del", "probe.9")
    spec = bridge.parse_l2({"bridgeName": "br_eth2_100", "physicalInterface": "eth2", "vlan": 100})
    bridge.ensure(spec, netns)
    links = _links(netns)
    vlan = links["eth2.100"]
    assert vlan["linkinfo"]["info_kind"] == "vlan"
    assert vlan["linkinfo"]["info_data"]["id"] == 100 and vlan["master"] == "br_eth2_100"
    assert bridge.ensure(spec, netns) == []


def test_firewall_tables_are_loaded_and_replaced_atomically(netns):
    need(shutil.which("nft") is not None or os.path.exists("/usr/sbin/nft"), "needs nftables")
    spec = {
        "nics": [{"device": "vnic1.0", "mac": "52:54:00:00:00:01", "ip": "10.0.0.5", "rules": [
            {"type": "Ingress", "protocol": "TCP", "startPort": 22, "allowedCidr": "0.0.0.0/0"},
        ]}],
        "eips": [{"vipIp": "172.16.0.10", "vmIp": "10.0.0.5"}],
    }  # fmt: skip
    firewall.apply(firewall.parse(spec), netns)
    listing = _sh("ip", "netns", "exec", netns.ns, "nft", "list", "ruleset")
    assert "table inet zagent" in listing and 'iifname "vnic1.0" jump guard-0' in listing
    assert "dnat to 10.0.0.5" in listing and "tcp dport 22 accept" in listing
    firewall.apply(firewall.parse({"nics": [], "eips": []}), netns)  # whole state replaced
    listing = _sh("ip", "netns", "exec", netns.ns, "nft", "list", "ruleset")
    assert "vnic1.0" not in listing and "dnat" not in listing
    assert listing.count("table inet zagent") == 1
    sysctl = _sh("ip", "netns", "exec", netns.ns, "sysctl", "net.bridge.bridge-nf-call-iptables")
    assert sysctl.strip().endswith("= 1")


def test_dnsmasq_serves_the_l3_and_reloads_reservations(netns, tmp_path: Path):
    need(shutil.which("dnsmasq") is not None or os.path.exists("/usr/sbin/dnsmasq"),
         "needs dnsmasq (dnsmasq-base)")  # fmt: skip
    bridge.ensure(bridge.parse_l2({"bridgeName": "br_eth1", "physicalInterface": "eth1"}), netns)
    raw = {
        "l3Uuid": L3,
        "bridgeName": "br_eth1",
        "cidr": "10.0.0.0/24",
        "serverIp": "10.0.0.2",
        "gateway": "10.0.0.1",
        "hosts": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10", "hostname": "web-1"}],
    }
    state = str(tmp_path)
    assert dhcp.apply(dhcp.parse_l3(raw), netns, state)["action"] == "started"
    paths = dhcp.paths_for(state, L3)
    pid = _wait_for_pid(paths.pid)
    assert f"--conf-file={paths.conf}" in Path(f"/proc/{pid}/cmdline").read_text()
    assert "10.0.0.2/24" in _sh("ip", "-n", netns.ns, "addr", "show", "dev", "br_eth1")
    raw["hosts"].append({"mac": "52:54:00:00:00:0b", "ip": "10.0.0.11", "hostname": "web-2"})
    assert dhcp.apply(dhcp.parse_l3(raw), netns, state)["action"] == "reloaded"
    assert ["kill", "-HUP", str(pid)] in netns.commands
    assert _wait_for_pid(paths.pid) == pid  # same process, new reservations
    raw["dnsDomain"] = "cloud.example"
    assert dhcp.apply(dhcp.parse_l3(raw), netns, state)["action"] == "restarted"
    new_pid = _wait_for_pid(paths.pid, not_pid=pid)
    assert new_pid != pid and not _alive(pid)


def _alive(pid: int) -> bool:
    """Running and not a zombie (a container's PID 1 may never reap the old dnsmasq)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_pid(path: str, not_pid: int | None = None) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            pid = int(Path(path).read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid != not_pid and _alive(pid):
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no live dnsmasq pid in {path}")
