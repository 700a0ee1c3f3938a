"""NIC hot-plug on a running KVM VM, with the host state the NIC needs.

attachNic: the NIC's L2 bridge is made on the host (``/v1/network/bridge``), the VM's network
state is rewritten with the new NIC in it (``/v1/network/vm``: its DHCP reservation, so
dnsmasq knows the MAC before the guest asks), then the agent attaches the interface to the
domain (``/v1/vm/attach-nic``). When the attach fails, the VM's network state is put back as
it was before, so nothing of the NIC stays on the host.

detachNic: the interface leaves the domain first (``/v1/vm/detach-nic``), then the VM's
network state is rewritten without it (its reservation and EIPs go). Security-group rules of
a NIC follow the security-group service: it pushes them when the NIC joins a group and
clears them before the NIC is deleted (``VmNicBeforeDelete``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zmn.api.errors import ZmnError
from zmn.services.kvm.hostnet import nic_device

if TYPE_CHECKING:
    from zmn.services.kvm.hosttype import KvmHostType

log = logging.getLogger("zmn.kvm.online")


def _with_nics(vm: Mapping[str, Any], nics: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {**vm, "vmNics": nics}


async def hotplug_nic(
    ht: KvmHostType, client: Any, op: str, vm: Mapping[str, Any], nic: Mapping[str, Any]
) -> dict[str, Any]:
    from zmn.services.kvm.vmops import ensure_bridges, vm_bridges

    uuid = str(vm["uuid"])
    others = [n for n in vm.get("vmNics") or [] if n.get("uuid") != nic.get("uuid")]
    before = _with_nics(vm, others if op == "detachNic" else list(vm.get("vmNics") or []))
    if op == "detachNic":
        await client.post("/v1/vm/detach-nic", {"uuid": uuid, "mac": nic["mac"]})
        bridges = vm_bridges(ht, before)
        await client.post("/v1/network/vm", ht.planner.vm_body(before, bridges))
        return {"state": vm.get("state")}
    after = _with_nics(vm, [*others, nic])
    bridges = vm_bridges(ht, after)
    l3 = str(nic["l3NetworkUuid"])
    await ensure_bridges(client, {l3: bridges[l3]})
    await client.post("/v1/network/vm", ht.planner.vm_body(after, bridges))
    spec = {
        "mac": nic["mac"],
        "bridge": bridges[l3]["bridgeName"],
        "deviceName": nic_device(uuid, int(nic.get("deviceId") or 0)),
    }
    try:
        await client.post("/v1/vm/attach-nic", {"uuid": uuid, "nic": spec})
    except BaseException:
        try:
            await client.post("/v1/network/vm", ht.planner.vm_body(before, bridges))
        except ZmnError as exc:  # the next change or start of the VM rewrites it anyway
            log.warning("network state of VM %s not restored on %s: %s", uuid, client, exc)
        raise
    return {"state": vm.get("state")}
