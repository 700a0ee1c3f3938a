"""Whether each guest took its DHCP lease: ``VmNic.leaseDate``.

Host types publish ``/host/nic/leased`` (``hostUuid``, ``leases: [{mac, ip, ...}]``) when a
host's DHCP server hands an address out or renews it (KVM: the agent watches dnsmasq's lease
files). A NIC whose MAC and address match, of a VM on the reporting host, gets ``leaseDate`` (a
host speaks for its own VMs only); it is cleared when the VM stops,
starts or reboots, so ``leaseDate`` always means "taken since the VM last (re)started".
``WaitVmInstance for=ip`` waits for it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, select, update

from zmn.core.db import utcnow
from zmn.services.vm.models import VmInstanceVO, VmNicVO

if TYPE_CHECKING:
    from zmn.core.bus import Event, Subscription
    from zmn.core.node import Node

log = logging.getLogger("zmn.vm.leases")

LEASES_EVENT = "/host/nic/leased"
RESET_STATES = ("Starting", "Stopped", "Rebooting", "Stopping")
_NIC = cast(Table, VmNicVO.__table__)
_VM = cast(Table, VmInstanceVO.__table__)
# a host speaks only for the NICs of the VMs it runs
_LEASED = (
    update(_NIC)
    .where(
        _NIC.c.mac == bindparam("_mac"),
        _NIC.c.ip == bindparam("_ip"),
        _NIC.c.vmInstanceUuid.in_(select(_VM.c.uuid).where(_VM.c.hostUuid == bindparam("_host"))),
    )
    .values(leaseDate=bindparam("_when"))
)
_RESET = update(_NIC).where(_NIC.c.vmInstanceUuid == bindparam("_vm")).values(leaseDate=None)


class LeaseTracker:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._subs: list[Subscription] = []

    def start(self) -> None:
        bus = self.node.bus
        self._subs = [
            bus.subscribe(LEASES_EVENT, self.on_leases),
            bus.subscribe("/vm/state/change", self.on_state),
        ]

    def stop(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []

    async def on_leases(self, event: Event) -> None:
        host = str(event.data.get("hostUuid") or "")
        rows: list[dict[str, Any]] = []
        for lease in event.data.get("leases") or []:
            if isinstance(lease, dict) and lease.get("mac") and lease.get("ip"):
                mac, ip = str(lease["mac"]).lower(), str(lease["ip"])
                rows.append({"_mac": mac, "_ip": ip, "_host": host, "_when": utcnow()})
        if rows:
            with self.node.db.engine.begin() as conn:
                conn.execute(_LEASED, rows)

    async def on_state(self, event: Event) -> None:
        # a VM leaving Created (its first start, in the create) never ran a guest: its NICs,
        # made in the same create, hold no lease to clear
        if event.data.get("oldState") == "Created":
            return
        if event.data.get("newState") in RESET_STATES and event.data.get("uuid"):
            with self.node.db.engine.begin() as conn:
                conn.execute(_RESET, {"_vm": str(event.data["uuid"])})
