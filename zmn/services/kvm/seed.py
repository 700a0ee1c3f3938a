"""The NoCloud seed a KVM VM gets (``seed`` in ``/v1/vm/start``; the agent writes the ISO).

A VM gets a seed when it has cloud-init data (``userData``/``sshKeys``, kept by the VM
service) or a ``hostname::`` tag. The seed names the VM's instance ID (new at every change of
user data or keys), its host name (the tag, else the VM name when it is a DNS label, else
``vm-<uuid prefix>``), and each NIC by MAC: a NIC whose address was pinned with a
``staticIp::`` tag gets that address, prefix and gateway as static configuration, the others
DHCP (the host's dnsmasq gives them the node's address anyway).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zmn.api.ids import short_id
from zmn.services.kvm.hostnet import guest_hostname
from zmn.services.kvm.reads import reading, system_tags, tag_value

if TYPE_CHECKING:
    from zmn.services.kvm.hosttype import KvmHostType
    from zmn.services.kvm.reads import Reader


def seed_body(
    ht: KvmHostType,
    vm: Mapping[str, Any],
    conn: Reader | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any] | None:
    """The agent's ``seed`` object for ``vm``, or None when it gets no seed; ``tags``: the
    VM's system tags when the caller has read them."""
    from zmn.services.vm import cloudinit  # the VM service's records, read only

    uuid = str(vm["uuid"])
    with reading(ht.node, conn) as s:
        source = cloudinit.seed_source(s, uuid)
        if tags is None:
            tags = system_tags(s, uuid)
    tag = tag_value(tags, "hostname")
    if source is None and tag is None:
        return None
    static = {t.split("::")[1] for t in tags if t.startswith("staticIp::")}
    nics = []
    for n in sorted(vm.get("vmNics") or [], key=lambda n: int(n.get("deviceId") or 0)):
        nic: dict[str, Any] = {"mac": n["mac"]}
        if n.get("l3NetworkUuid") in static and n.get("ip") and n.get("netmask"):
            net = ipaddress.IPv4Network(f"0.0.0.0/{n['netmask']}")
            nic.update(address=n["ip"], prefix=net.prefixlen)
            if n.get("gateway"):
                nic["gateway"] = n["gateway"]
        nics.append(nic)
    return {
        "instanceId": source["instanceId"] if source else f"iid-{uuid}",
        "hostname": guest_hostname(str(vm.get("name") or ""), tag) or f"vm-{short_id(uuid, 12)}",
        "userData": source["userData"] if source else "",
        "sshKeys": source["sshKeys"] if source else [],
        "nics": nics,
    }
