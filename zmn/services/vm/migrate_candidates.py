"""``GetVmMigrationCandidateHosts``: where ``MigrateVm`` could send a VM now.

The same filters as the migration's own host allocation (the allocator's candidates: its
cluster, Enabled and Connected, its L3s' L2s, its primary storages attached to the cluster
and, for shared storage (SharedMountPoint, NFS), usable from the host: not Disconnected
there) plus room for its CPUs and memory, without reserving anything. A KVM VM with a volume
on local storage has none: only its host reaches that storage. The dashboard's
migrate form offers these hosts.
"""

from __future__ import annotations

from typing import Any

from zmn.api.errors import ZmnError
from zmn.core.service import Call, handler
from zmn.services.host import allocator
from zmn.services.host.vmapi import AllocateHost
from zmn.services.vm.api import GetVmMigrationCandidateHosts
from zmn.services.vm.common import VmBase, load_vm

LOCAL_STORAGE = "LocalStorage"


class MigrationCandidateHandlers(VmBase):
    @handler(GetVmMigrationCandidateHosts)
    async def migration_candidates(
        self, msg: GetVmMigrationCandidateHosts, call: Call
    ) -> dict[str, Any]:
        vm = load_vm(call, msg.vmInstanceUuid, "vmInstanceUuid")
        if not vm.get("hostUuid") or self._on_local_storage(call, vm):
            return {"inventories": []}
        query = AllocateHost(
            cpuNum=vm["cpuNum"],
            memorySize=vm["memorySize"],
            clusterUuid=vm["clusterUuid"],
            avoidHostUuids=[vm["hostUuid"]],
            l3NetworkUuids=[n["l3NetworkUuid"] for n in vm["vmNics"]],
            primaryStorageUuids=sorted(
                {v["primaryStorageUuid"] for v in vm["allVolumes"] if v["primaryStorageUuid"]}
            ),
            dryRun=True,
        )
        ratios = allocator.ratios(self.node)
        with self.node.db.engine.begin() as conn:
            try:
                hosts = allocator.candidates(self.node, conn, query)
            except ZmnError:
                return {"inventories": []}  # no host passes a filter: no candidate
            uuids = [
                h.uuid
                for h in hosts
                if allocator.has_room(h, vm["cpuNum"], vm["memorySize"], ratios)
            ]
        rt = self.node.resources.get("Host")
        with call.tx() as s:
            rows = [s.get(rt.model, u) for u in uuids]
            inventories = rt.inventories(s, [r for r in rows if r is not None])
        inventories.sort(key=lambda h: (-h["availableMemoryCapacity"], h["name"]))
        return {"inventories": inventories}

    def _storages(self, call: Call, vm: dict[str, Any], types: tuple[str, ...]) -> list[str]:
        rt = self.node.resources.types.get("PrimaryStorage")
        if rt is None:
            return []
        ps = {str(v["primaryStorageUuid"]) for v in vm["allVolumes"] if v["primaryStorageUuid"]}
        with call.tx() as s:
            rows = [s.get(rt.model, u) for u in sorted(ps)]
        return [str(r.uuid) for r in rows if r is not None and r.type in types]

    def _on_local_storage(self, call: Call, vm: dict[str, Any]) -> bool:
        if vm.get("hypervisorType") != "KVM":
            return False  # the simulator moves any VM
        return bool(self._storages(call, vm, (LOCAL_STORAGE,)))
