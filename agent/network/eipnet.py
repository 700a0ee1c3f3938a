"""The addresses that let this host route its EIPs (the nftables NAT is in :mod:`firewall`).

DNAT alone moves nothing: a packet for the VIP must first reach the host, and the VM's reply
must find a next hop. For each EIP whose body names the VIP's bridge the agent puts
``vipIp/prefixLen`` on that bridge (the host answers ARP for the VIP on the public side and
has a route back to that L3), and ``vmGateway/32`` on the VM NIC's bridge (the host answers
ARP for the guest's default gateway, so replies and the VM's own traffic come to it and are
SNAT-ed back to the VIP). IPv4 forwarding is switched on while there are such EIPs; the
filter table keeps routing to the EIPs only (see :func:`firewall._routed`).

Addresses are changed by difference between the previous and the new state, so an address
still needed by another EIP (two EIPs of one L3 share its gateway) stays. When an address
cannot be added the ones this call added are taken back (the caller restores the firewall).
"""

from __future__ import annotations

from agent.network.executor import Executor
from agent.network.firewall import FirewallSpec

Address = tuple[str, str]  # (device, "a.b.c.d/len")
SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.promote_secondaries=1")


def addresses(spec: FirewallSpec) -> set[Address]:
    """The host addresses the EIPs of ``spec`` need."""
    out: set[Address] = set()
    for e in spec.eips:
        if e.bridge is None or e.prefix is None:
            continue  # the node did not say where the VIP lives: NAT only
        out.add((e.bridge, f"{e.vip}/{e.prefix}"))
        if e.vm_bridge is not None and e.gateway is not None:
            out.add((e.vm_bridge, f"{e.gateway}/32"))
    return out


def apply(
    old: FirewallSpec | None, new: FirewallSpec, executor: Executor, *, ip: str = "ip"
) -> dict[str, int]:
    """Add what ``new`` needs, remove what only ``old`` needed; returns the counts."""
    before = addresses(old) if old is not None else set()
    after = addresses(new)
    added, removed = sorted(after - before), sorted(before - after)
    if added:
        for key in SYSCTLS:
            executor.run(["sysctl", "-q", "-w", key])
    done: list[Address] = []
    try:
        for dev, addr in added:
            executor.run([ip, "addr", "replace", addr, "dev", dev])
            done.append((dev, addr))
    except Exception:  # a missing bridge, say: take back what this call added
        for dev, addr in done:
            executor.run([ip, "addr", "del", addr, "dev", dev], check=False)
        raise
    for dev, addr in removed:
        executor.run([ip, "addr", "del", addr, "dev", dev], check=False)
    return {"added": len(added), "removed": len(removed)}
