"""Host maintenance: the VMs leave the host before it goes into Maintenance.

By ``vm/hostMaintenance.policy``: ``MigrateOrStop`` (default) migrates each running VM to
another host of its cluster and stops the ones that cannot move; ``Migrate`` fails the
maintenance (the host goes back) when a VM cannot move; ``Stop`` stops them all. Paused and
Unknown VMs are stopped (cold). The operations go through the normal handlers (VM queues,
chains, events). On KVM a migration is a live migration (the VM's volumes on shared primary
storage); a VM on local storage cannot move and is stopped (``MigrateOrStop``).

``ChangeHostState`` is a long API: its job shows one step per VM in its progress text
(``VM 2/3 web-2: migrated to kvm3``), one after the other, so the job says how far the
evacuation is and what happened to each VM. Leaving maintenance moves nothing back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from zmn.api.errors import InvalidState, ZmnError
from zmn.services.vm.api import MigrateVm, StopVmInstance
from zmn.services.vm.models import VmInstanceVO

if TYPE_CHECKING:
    from zmn.core.node import Node
    from zmn.core.service import Call

log = logging.getLogger("zmn.vm.maintenance")


class VmHostMaintenance:
    """Implements ``zmn.core.hosthooks.HostMaintenanceExtension``."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def _vms(self, host_uuid: str) -> list[tuple[str, str, str]]:
        with self.node.db.tx() as s:
            rows = s.execute(
                select(VmInstanceVO.uuid, VmInstanceVO.name, VmInstanceVO.state)
                .where(VmInstanceVO.hostUuid == host_uuid)
                .order_by(VmInstanceVO.name)
            )
            return [(str(u), str(n), str(st)) for u, n, st in rows]

    async def prepare_maintenance(self, call: Call, host_uuid: str) -> None:
        policy = str(self.node.global_config.get("vm", "hostMaintenance.policy"))
        vms = self._vms(host_uuid)
        for i, (uuid, name, state) in enumerate(vms):
            step = f"VM {i + 1}/{len(vms)} {name}"
            await call.progress(100 * i // (len(vms) + 1), f"{step}: leaving the host")
            try:
                outcome = await self._evacuate(call, uuid, state, policy)
            except InvalidState:
                outcome = "changed state meanwhile; nothing to move"
            log.info("maintenance of host %s: %s: %s", host_uuid, step, outcome)
            await call.progress(100 * (i + 1) // (len(vms) + 1), f"{step}: {outcome}")

    async def _evacuate(self, call: Call, uuid: str, state: str, policy: str) -> str:
        why = f"policy {policy}" if policy == "Stop" else f"it is {state}"
        if state == "Running" and policy != "Stop":
            try:
                inv = (await call.call(MigrateVm(vmInstanceUuid=uuid)))["inventory"]
                return f"migrated to {self._host_name(inv['hostUuid'])}"
            except ZmnError as exc:
                if policy == "Migrate":
                    raise
                log.info("VM %s cannot migrate (%s); stopping it", uuid, exc.message)
                why = f"cannot migrate: {exc.message}"
        await call.call(StopVmInstance(uuid=uuid, type="cold"))
        return f"stopped ({why})"

    def _host_name(self, uuid: str) -> str:
        rt = self.node.resources.get("Host")
        with self.node.db.tx() as s:
            row = s.get(rt.model, uuid)
            return str(row.name) if row is not None else uuid
