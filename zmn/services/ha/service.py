"""The ``ha`` service: VM HA for KVM hosts on shared primary storage (see docs/ha.md).

Global config (category ``ha``): ``host.detectTimeout``, ``storage.heartbeatTimeout``,
``storage.heartbeatInterval``, ``restart.retryInterval``, ``restart.maxBackoff``. The
``ha::NeverStop`` tag itself belongs to the VM service (``zmn/services/vm/ha.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete

from zmn.core.bus import Event
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.resource import Expansion, RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Service
from zmn.services.ha.models import VmHaStatusVO
from zmn.services.ha.monitor import HaMonitor

if TYPE_CHECKING:
    from zmn.core.node import Node


class HaService(Service):
    name = "ha"
    summary = "VM HA: NeverStop VMs of a dead KVM host restarted on another host"
    requires = ("vm", "kvm")
    global_configs = [
        GlobalConfigDef(
            "ha",
            "host.detectTimeout",
            60,
            "int",
            "seconds the node must have lost a KVM host's agent before the host can be declared"
            " dead (the agent fences itself after half of it)",
            min=2,
            max=3600,
        ),
        GlobalConfigDef(
            "ha",
            "storage.heartbeatTimeout",
            30,
            "int",
            "seconds a dead host's heartbeat must have stood still on every shared primary"
            " storage it uses (read by live hosts) before its HA VMs restart elsewhere",
            min=2,
            max=3600,
        ),
        GlobalConfigDef(
            "ha",
            "storage.heartbeatInterval",
            5,
            "int",
            "seconds between heartbeat writes of each agent and between HA checks of the node;"
            " keep it well under half of both timeouts",
            min=1,
            max=600,
        ),
        GlobalConfigDef(
            "ha",
            "restart.retryInterval",
            5,
            "int",
            "seconds before the first retry of a failed HA restart (doubles each time)",
            min=1,
        ),
        GlobalConfigDef(
            "ha",
            "restart.maxBackoff",
            300,
            "int",
            "longest pause, in seconds, between retries of a failed HA restart",
            min=1,
        ),
    ]

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.monitor = HaMonitor(node)

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "VmHaStatus",
                VmHaStatusVO,
                self.name,
                "vm-ha",
                columns=["uuid", "name", "state", "attempts", "hostUuid", "lastError"],
                refs={
                    "deadHostUuid": RefSpec("Host", on_delete="keep"),
                    "hostUuid": RefSpec("Host", on_delete="keep"),
                },
                docs={
                    "uuid": "the VM's UUID",
                    "name": "the VM's name",
                    "deadHostUuid": "the host that died under the VM",
                    "hostUuid": "the host the VM was restarted on",
                    "state": "Restarting, Restarted, RestartFailed (retried with backoff) or"
                    " Skipped (a volume on local storage)",
                    "attempts": "starts tried since the host died",
                    "lastError": "why the last restart failed, or why the VM was skipped",
                    "nextAttemptDate": "when a failed restart is tried again (UTC)",
                },
                admin_only=True,
                summary="what VM HA did about a VM whose host died",
            )
        )
        registry.inject(  # zcli vm get web1 -c name,haStatus.state,haStatus.lastError
            "VmInstance",
            Expansion(
                "haStatus", "VmHaStatus", "uuid", "uuid", plugin=self.name,
                doc="what VM HA did when the VM's host died (restarted, or why not yet)",
            ),
        )  # fmt: skip

    async def start(self) -> None:
        self._subs = [self.node.bus.subscribe("/vm/deleted", self._on_vm_deleted)]
        self.monitor.start()

    async def stop(self) -> None:
        for sub in getattr(self, "_subs", []):
            self.node.bus.unsubscribe(sub)
        await self.monitor.stop()

    async def _on_vm_deleted(self, event: Event) -> None:
        """An expunged VM's HA status goes with it (``vm-ha list`` shows live VMs only)."""
        vm = event.data.get("inventory") or {}
        if vm.get("state") == "Expunged" and vm.get("uuid"):
            with self.node.db.tx() as s:
                s.execute(delete(VmHaStatusVO).where(VmHaStatusVO.uuid == str(vm["uuid"])))
