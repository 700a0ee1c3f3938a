"""Host maintenance: the VMs leave the host before it goes into Maintenance.

By ``vm/hostMaintenance.policy``: ``MigrateOrStop`` (default) migrates each running VM to
another host of its cluster and stops the ones that cannot move; ``Migrate`` fails the
maintenance (the host goes back) when a VM cannot move; ``Stop`` stops them all. Paused and
Unknown VMs are stopped (cold). The operations go through the normal handlers (VM queues,
chains, events).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

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

    def _vms(self, host_uuid: str) -> list[tuple[str, str]]:
        with self.node.db.tx() as s:
            rows = s.execute(
                select(VmInstanceVO.uuid, VmInstanceVO.state)
                .where(VmInstanceVO.hostUuid == host_uuid)
                .order_by(VmInstanceVO.name)
            )
            return [(str(u), str(st)) for u, st in rows]

    async def prepare_maintenance(self, call: Call, host_uuid: str) -> None:
        policy = str(self.node.global_config.get("vm", "hostMaintenance.policy"))
        for uuid, state in self._vms(host_uuid):
            try:
                await self._evacuate(call, uuid, state, policy)
            except InvalidState:
                continue  # it changed state meanwhile (stopped, destroyed): nothing to move

    async def _evacuate(self, call: Call, uuid: str, state: str, policy: str) -> Any:
        if state == "Running" and policy != "Stop":
            try:
                return await call.call(MigrateVm(vmInstanceUuid=uuid))
            except ZmnError as exc:
                if policy == "Migrate":
                    raise
                log.info("VM %s cannot migrate (%s); stopping it", uuid, exc.message)
        return await call.call(StopVmInstance(uuid=uuid, type="cold"))
