"""The agent's merged network state for its VMs (``agent.network.hostnet``) on a recording
executor: what dnsmasq files and nftables documents it produces, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.network.executor import RecordingExecutor
from agent.network.hostnet import HostNetwork
from zmn.api.errors import InvalidArgument, OperationFailed

L3 = "1" * 32
VM_A, VM_B = "a" * 32, "b" * 32
L3_BODY = {"l3Uuid": L3, "bridgeName": "br_eth1", "cidr": "10.5.0.0/24",
           "serverIp": "10.5.0.254", "gateway": "10.5.0.1", "dns": []}  # fmt: skip


def vm(uuid: str, mac: str, ip: str, **nic: object) -> dict[str, object]:
    return {"uuid": uuid, "l3s": [L3_BODY],
            "nics": [{"mac": mac, "ip": ip, "l3Uuid": L3, "device": f"v{uuid[:8]}.0", **nic}]}  # fmt: skip


@pytest.fixture
def net(tmp_path: Path) -> HostNetwork:
    return HostNetwork(RecordingExecutor(), str(tmp_path), sleep=lambda _s: None)


def hosts(net: HostNetwork) -> str:
    files = net.executor.files  # type: ignore[attr-defined]
    return files[next(p for p in files if p.endswith(f"{L3}/hosts"))]


def test_reservations_of_all_vms_on_an_l3_share_one_dnsmasq(net: HostNetwork) -> None:
    net.set_vm(vm(VM_A, "52:54:00:00:00:0a", "10.5.0.10", hostname="web-1"))
    out = net.set_vm(vm(VM_B, "52:54:00:00:00:0b", "10.5.0.11"))
    assert out["dhcp"] == {L3: "started"}  # recording: no pid file, so "started" again
    assert hosts(net) == "52:54:00:00:00:0a,10.5.0.10,web-1\n52:54:00:00:00:0b,10.5.0.11\n"
    net.remove_vm({"uuid": VM_A})
    assert hosts(net) == "52:54:00:00:00:0b,10.5.0.11\n"
    out = net.remove_vm({"uuid": VM_B})
    assert out["dhcp"] == {L3: "stopped"} and hosts(net) == ""
    assert net.snapshot() == {"l3s": {}, "vms": {}, "rules": {}}


@pytest.mark.parametrize(
    "bad",
    [
        {"hostname": "x\ndhcp-script=/bin/sh"},
        {"hostname": "a,b"},
        {"mac": "52:54:00:00:00:0a\nfoo"},
        {"ip": "10.5.0.10,10.5.0.11"},
        {"ip": "10.6.0.10"},  # outside the L3
        {"device": "eth0; reboot"},
    ],
)
def test_hostile_values_are_refused_and_change_nothing(net: HostNetwork, bad: dict) -> None:
    nic = {"mac": "52:54:00:00:00:0a", "ip": "10.5.0.10", **bad}
    with pytest.raises(InvalidArgument):
        net.set_vm(vm(VM_A, str(nic.pop("mac")), str(nic.pop("ip")), **nic))
    assert net.executor.files == {} and net.executor.commands == []  # type: ignore[attr-defined]


def test_rules_and_eips_make_one_nftables_document(net: HostNetwork) -> None:
    body = vm(VM_A, "52:54:00:00:00:0a", "10.5.0.10")
    body["eips"] = [{"vipIp": "203.0.113.5", "vmIp": "10.5.0.10"}]
    net.set_vm(body)
    net.set_rules({"mac": "52:54:00:00:00:0a",
                   "rules": [{"type": "Ingress", "protocol": "TCP", "startPort": 22}]})  # fmt: skip
    ex: RecordingExecutor = net.executor  # type: ignore[assignment]
    docs = [json.loads(s or "{}") for c, s in zip(ex.commands, ex.stdins, strict=True)
            if c[:2] == ["nft", "-j"]]  # fmt: skip
    text = json.dumps(docs[-1])
    assert '"dnat": {"addr": "10.5.0.10"}' in text and '"snat": {"addr": "203.0.113.5"}' in text
    assert "52:54:00:00:00:0a" in text and '"right": 22' in text
    with pytest.raises(InvalidArgument):  # an EIP to an address the VM does not have
        net.set_vm({**body, "eips": [{"vipIp": "203.0.113.6", "vmIp": "10.5.0.99"}]})
    net.remove_vm({"uuid": VM_A})
    last = json.loads([s for c, s in zip(ex.commands, ex.stdins, strict=True)
                       if c[:2] == ["nft", "-j"]][-1] or "{}")  # fmt: skip
    assert "dnat" not in json.dumps(last) and "52:54:00:00:00:0a" not in json.dumps(last)


def test_an_address_moved_to_another_vm_leaves_the_old_one(net: HostNetwork) -> None:
    net.set_vm(vm(VM_A, "52:54:00:00:00:0a", "10.5.0.10"))
    net.set_vm(vm(VM_B, "52:54:00:00:00:0b", "10.5.0.10"))  # the node's newest word wins
    assert hosts(net) == "52:54:00:00:00:0b,10.5.0.10\n"


def test_state_survives_a_restart_and_a_tampered_file_is_ignored(tmp_path: Path) -> None:
    ex = RecordingExecutor()
    HostNetwork(ex, str(tmp_path)).set_vm(vm(VM_A, "52:54:00:00:00:0a", "10.5.0.10"))
    again = HostNetwork(ex, str(tmp_path))
    assert VM_A in again.snapshot()["vms"]
    path = next(p for p in ex.files if p.endswith("state.json"))
    state = json.loads(ex.files[path])
    state["vms"][VM_A]["nics"][0]["hostname"] = "x\ndhcp-script=/bin/sh"
    ex.files[path] = json.dumps(state)
    assert HostNetwork(ex, str(tmp_path)).snapshot()["vms"] == {}


def addr_commands(net: HostNetwork) -> list[list[str]]:
    ex: RecordingExecutor = net.executor  # type: ignore[assignment]
    return [c[1:] for c in ex.commands
            if c[:2] == ["ip", "addr"] and ("br_pub" in c or "10.5.0.1/32" in c)]  # fmt: skip


def test_a_routed_eip_puts_the_vip_and_the_gateway_on_the_bridges(net: HostNetwork) -> None:
    """The host answers for the VIP on the public bridge and for the guest's gateway on the
    VM's bridge, routes (ip_forward) and lets routing reach the EIPs only."""
    pub = {"bridgeName": "br_pub", "prefixLen": 24}
    a = {**vm(VM_A, "52:54:00:00:00:0a", "10.5.0.10"),
         "eips": [{"vipIp": "203.0.113.5", "vmIp": "10.5.0.10", **pub}]}  # fmt: skip
    b = {**vm(VM_B, "52:54:00:00:00:0b", "10.5.0.11"),
         "eips": [{"vipIp": "203.0.113.6", "vmIp": "10.5.0.11", **pub}]}  # fmt: skip
    out = net.set_vm(a)
    assert out["eipAddresses"] == {"added": 2, "removed": 0}
    ex: RecordingExecutor = net.executor  # type: ignore[assignment]
    assert ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"] in ex.commands
    assert addr_commands(net) == [["addr", "replace", "10.5.0.1/32", "dev", "br_eth1"],
                                  ["addr", "replace", "203.0.113.5/24", "dev", "br_pub"]]  # fmt: skip
    doc = json.dumps([json.loads(s or "{}") for c, s in zip(ex.commands, ex.stdins, strict=True)
                      if c[:2] == ["nft", "-j"]][-1])  # fmt: skip
    # routed into br_eth1 only when DNAT-ed, out of it only from an EIP's address
    assert '"routed-in"' in doc and '"right": "dnat"' in doc
    assert '{"set": ["10.5.0.10"]}' in doc and '"right": "br_eth1"' in doc
    # the host stands in for the gateway towards A's tap only (ARP in, out and forwarded)
    gw_arp = [r["add"]["rule"] for r in json.loads(doc)["nftables"] if "rule" in r.get("add", {})
              and '"10.5.0.1"' in json.dumps(r)]  # fmt: skip
    assert [(r["family"], r["chain"]) for r in gw_arp] == [
        ("bridge", "input"), ("bridge", "output"), ("bridge", "forward")]  # fmt: skip
    assert all(f"v{VM_A[:8]}.0" in json.dumps(r) for r in gw_arp)
    net.set_vm(b)
    net.remove_vm({"uuid": VM_A})  # the gateway stays: B's EIP needs it
    assert addr_commands(net)[2:] == [["addr", "replace", "203.0.113.6/24", "dev", "br_pub"],
                                      ["addr", "del", "203.0.113.5/24", "dev", "br_pub"]]  # fmt: skip
    net.remove_vm({"uuid": VM_B})
    assert addr_commands(net)[4:] == [["addr", "del", "10.5.0.1/32", "dev", "br_eth1"],
                                      ["addr", "del", "203.0.113.6/24", "dev", "br_pub"]]  # fmt: skip
    # a bad public side is refused before anything runs
    before = len(ex.commands)
    for bad in (
        {"bridgeName": "br pub;x", "prefixLen": 24},
        {"bridgeName": "br_pub", "prefixLen": 33},
    ):
        with pytest.raises(InvalidArgument):
            net.set_vm({**a, "eips": [{"vipIp": "203.0.113.5", "vmIp": "10.5.0.10", **bad}]})
    assert len(ex.commands) == before


def test_an_eip_address_that_cannot_be_added_changes_nothing(tmp_path: Path) -> None:
    """The VIP's bridge is missing: the gateway added before it is taken back, the firewall
    document goes back to the old state's and the state is not saved."""
    ex = RecordingExecutor(fail={("ip", "addr", "replace", "203.0.113.5/24")})
    net = HostNetwork(ex, str(tmp_path), sleep=lambda _s: None)
    net.set_vm(vm(VM_A, "52:54:00:00:00:0a", "10.5.0.10"))
    body = {**vm(VM_A, "52:54:00:00:00:0a", "10.5.0.10"), "eips": [
        {"vipIp": "203.0.113.5", "vmIp": "10.5.0.10", "bridgeName": "br_pub", "prefixLen": 24}]}  # fmt: skip
    with pytest.raises(OperationFailed):
        net.set_vm(body)
    addr = [c[2:] for c in ex.commands if c[:2] == ["ip", "addr"] and "br_pub" not in c[-1:]]
    assert addr[-2:] == [["replace", "10.5.0.1/32", "dev", "br_eth1"],
                         ["del", "10.5.0.1/32", "dev", "br_eth1"]]  # fmt: skip
    last = [s for c, s in zip(ex.commands, ex.stdins, strict=True) if c[:2] == ["nft", "-j"]][-1]
    assert "dnat" not in (last or "")
    assert net.snapshot()["vms"][VM_A]["eips"] == []
    saved = json.loads(next(v for p, v in ex.files.items() if p.endswith("state.json")))
    assert saved["vms"][VM_A]["eips"] == []
