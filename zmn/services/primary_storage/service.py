"""Primary storage: where VM volumes live; attached to clusters of its zone."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidArgument
from zmn.core import crud, links
from zmn.core.consistency import ConsistencyCheck
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.hosthooks import HostStorageAccess
from zmn.core.resource import LinkSpec, RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.services.primary_storage.api import (
    AddSimulatorPrimaryStorage,
    AttachPrimaryStorageToCluster,
    ChangePrimaryStorageState,
    DeletePrimaryStorage,
    DetachPrimaryStorageFromCluster,
    UpdatePrimaryStorage,
)
from zmn.services.primary_storage.capacity import (
    CapacityHandlers,
    PrimaryStorageCapacityConsistency,
)
from zmn.services.primary_storage.local import LOCAL, LocalStorageHandlers
from zmn.services.primary_storage.migrate import CHAIN as MIGRATE_FLOWS
from zmn.services.primary_storage.migrate import MIGRATE_CHAIN, LocalMigrateHandlers
from zmn.services.primary_storage.migrate import recover as recover_migrations
from zmn.services.primary_storage.models import PrimaryStorageClusterRefVO, PrimaryStorageVO
from zmn.services.primary_storage.shared import (
    GLOBAL_CONFIGS as SHARED_CONFIGS,
)
from zmn.services.primary_storage.shared import (
    SHARED,
    SMP,
    SharedStorageAccess,
    SharedStorageHandlers,
    host_refs,
)

log = logging.getLogger("zmn.storage")

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.bus import Event
    from zmn.core.node import Node

PS_STATE = StateMachine(
    "PrimaryStorage",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Enabled", "maintain"): "Maintenance",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
        ("Disabled", "maintain"): "Maintenance",
        ("Maintenance", "enable"): "Enabled",
        ("Maintenance", "disable"): "Disabled",
        ("Maintenance", "maintain"): "Maintenance",
    },
    allowed={"attach": {"Enabled", "Disabled"}, "allocate": {"Enabled"}},
)

CLUSTER_LINK = LinkSpec(
    PrimaryStorageClusterRefVO, "PrimaryStorage", "primaryStorageUuid", "Cluster", "clusterUuid"
)


def _attached_clusters(session: Session, invs: list[dict[str, Any]]) -> None:
    for inv in invs:
        inv["attachedClusterUuids"] = links.linked_uuids(
            session, CLUSTER_LINK, "clusterUuid", "primaryStorageUuid", inv["uuid"]
        )
        if inv.get("type") in SHARED:  # which hosts see it, and why not
            inv["hostRefs"] = host_refs(session, inv["uuid"])


class PrimaryStorageService(
    CapacityHandlers, LocalMigrateHandlers, SharedStorageHandlers, LocalStorageHandlers, Service
):
    name = "primaryStorage"
    summary = "primary storage"
    requires = ("zone", "cluster")
    state_machines = [PS_STATE]
    error_codes = {
        "PRIMARY_STORAGE.NOT_FOUND": "no primary storage with that UUID or name",
        "PRIMARY_STORAGE.DUPLICATE_NAME": "a primary storage with that name exists",
        "PRIMARY_STORAGE.INVALID_STATE": "the state event or operation is not allowed in its state",
        "PRIMARY_STORAGE.ZONE_MISMATCH": "the cluster is in another zone",
        "PRIMARY_STORAGE.ALREADY_ATTACHED": "it is already attached to the cluster",
        "PRIMARY_STORAGE.NOT_ATTACHED": "the primary storage is not attached to the cluster",
        "STORAGE.INVALID_CAPACITY": "a capacity is negative, or free exceeds total",
        "PRIMARY_STORAGE.ALLOCATION_FAILED": "no primary storage where needed has room",
        "PRIMARY_STORAGE.HOST_NOT_CONNECTED": "the host does not see the shared primary storage",
        "PRIMARY_STORAGE.LOCAL_MIGRATE_NO_SPACE": "the destination host's directory has no room",
        "PRIMARY_STORAGE.LOCAL_MIGRATE_HOST": "the source or destination host is not usable",
        "PRIMARY_STORAGE.LOCAL_MIGRATE_VM_STATE": "the volume's VM is not Stopped",
        "PRIMARY_STORAGE.LOCAL_MIGRATE_FAILED": "a volume file could not be moved",
    }
    global_configs = [
        GlobalConfigDef(
            "primaryStorage",
            "overProvisioning.ratio",
            1.0,
            "float",
            "bytes of volumes placed on a primary storage may reach its capacity times this",
            min=0.1,
        ),
        *SHARED_CONFIGS,
    ]

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        node.extensions.add(ConsistencyCheck, PrimaryStorageCapacityConsistency(node))  # type: ignore[type-abstract]
        node.extensions.add(HostStorageAccess, SharedStorageAccess())  # type: ignore[type-abstract]
        node.flows.add_chain(MIGRATE_CHAIN, MIGRATE_FLOWS)
        self._subs: list[Any] = []

    async def start(self) -> None:
        self._subs = self.subscribe_local() + self.subscribe_shared() + self._subscribe_files()
        try:
            done = await recover_migrations(self.node)
            if done:
                log.warning("settled %d interrupted local storage migration(s)", len(done))
        except Exception:  # a failed recovery must not keep the node down
            log.exception("recovering interrupted local storage migrations failed")

    async def stop(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []

    # ----------------------------------------------------------------- volume files

    def _subscribe_files(self) -> list[Any]:
        bus = self.node.bus
        return [
            bus.subscribe("/vm/deleted", self._on_vm_deleted),
            bus.subscribe("/volume/deleted", self._on_volume_deleted),
        ]

    async def _on_vm_deleted(self, event: Event) -> None:
        """An expunged VM's root volume goes with it (its data volumes were detached)."""
        vm = event.data.get("inventory") or {}
        if vm.get("state") != "Expunged":
            return
        for vol in vm.get("allVolumes") or []:
            if vol.get("type") == "Root":
                await self.delete_volume_file(vol)

    async def _on_volume_deleted(self, event: Event) -> None:
        await self.delete_volume_file(event.data.get("inventory") or {})

    async def delete_volume_file(self, vol: dict[str, Any]) -> None:
        """A deleted volume's file goes from where its storage type keeps it. Anything not
        shared is local storage's to judge: its ``local_storage_volume_ref`` row says whether
        the volume is its own (and is dropped even when the storage row went first)."""
        ps_uuid = str(vol.get("primaryStorageUuid") or "")
        with self.node.db.tx() as s:
            ps = s.get(PrimaryStorageVO, ps_uuid) if ps_uuid else None
            shared_root = (
                str(ps.mountPath or ps.url) if ps is not None and ps.type in SHARED else None
            )
        if shared_root is not None:
            await self.delete_shared_file(vol, ps_uuid, shared_root)
        else:
            await self.delete_local_file(vol)

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "PrimaryStorage",
                PrimaryStorageVO,
                self.name,
                "primary-storage",
                aliases={"attachedClusterUuids": "cluster.uuid"},  # ZStack's list field
                columns=[
                    "uuid",
                    "name",
                    "zoneUuid",
                    "type",
                    "state",
                    "status",
                    "availableCapacity",
                    "totalCapacity",
                ],
                refs={"zoneUuid": RefSpec("Zone", on_delete="cascade")},
                enums={
                    "type": ["Simulator", "LocalStorage", SMP, "NFS"],
                    "state": sorted(PS_STATE.states),
                    "status": ["Connecting", "Connected", "Disconnected"],
                },
                docs={
                    "totalCapacity": "bytes the storage offers for volumes",
                    "availableCapacity": "bytes not yet given to volumes",
                    "totalPhysicalCapacity": "bytes of the underlying disk",
                    "availablePhysicalCapacity": "bytes free on the underlying disk",
                },
                admin_only=True,
                inventory_hook=_attached_clusters,
                state_field="state",
                summary="storage for VM volumes, attached to clusters",
            )
        )
        registry.add_link(CLUSTER_LINK)

    @handler(AddSimulatorPrimaryStorage)
    async def add_simulator_primary_storage(
        self, msg: AddSimulatorPrimaryStorage, call: Call
    ) -> dict[str, Any]:
        available = msg.totalCapacity if msg.availableCapacity is None else msg.availableCapacity
        links.check_capacities(msg.totalCapacity, available)
        if not msg.url.strip():
            raise InvalidArgument("url must not be empty", field="url")
        rt = self.node.resources.get("PrimaryStorage")
        row = PrimaryStorageVO(
            name=msg.name,
            zoneUuid=msg.zoneUuid,
            type="Simulator",
            url=msg.url,
            mountPath=msg.url,
            state="Enabled",
            status="Connected",
            totalCapacity=msg.totalCapacity,
            availableCapacity=available,
            totalPhysicalCapacity=msg.totalCapacity,
            availablePhysicalCapacity=available,
        )
        return await crud.create(
            call, "PrimaryStorage", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(UpdatePrimaryStorage)
    async def update_primary_storage(self, msg: UpdatePrimaryStorage, call: Call) -> dict[str, Any]:
        links.check_rename(call, "PrimaryStorage", msg.uuid, msg.name)
        return await crud.update_fields(
            call, "PrimaryStorage", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(ChangePrimaryStorageState)
    async def change_primary_storage_state(
        self, msg: ChangePrimaryStorageState, call: Call
    ) -> dict[str, Any]:
        return await crud.change_state(call, "PrimaryStorage", msg.uuid, msg.stateEvent, PS_STATE)

    @handler(DeletePrimaryStorage)
    async def delete_primary_storage(self, msg: DeletePrimaryStorage, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "PrimaryStorage", msg.uuid, cascade=msg.cascade)

    @handler(AttachPrimaryStorageToCluster)
    async def attach_to_cluster(
        self, msg: AttachPrimaryStorageToCluster, call: Call
    ) -> dict[str, Any]:
        rt = self.node.resources.get("PrimaryStorage")
        with call.tx() as s:
            ps = crud.get_row(s, rt, msg.primaryStorageUuid, "primaryStorageUuid")
            cluster = links.row_of(call, s, "Cluster", msg.clusterUuid, "clusterUuid")
            PS_STATE.check(ps.uuid, ps.state, "attach")
            links.same_zone(
                ps,
                "primary storage",
                cluster,
                "cluster",
                "clusterUuid",
                "PRIMARY_STORAGE.ZONE_MISMATCH",
            )
            links.add_link(s, CLUSTER_LINK, ps, cluster)
            s.flush()
            inv = rt.inventories(s, [ps])[0]
        await links.publish_link(call, CLUSTER_LINK, "attached", ps.uuid, cluster.uuid)
        if ps.type == LOCAL:  # the directory made on the cluster's hosts, their capacity added
            await self.sync_local(ps_uuid=ps.uuid)
            with call.tx() as s:
                inv = rt.inventories(s, [crud.get_row(s, rt, ps.uuid)])[0]
        elif ps.type in SHARED:  # every host of the cluster checks it sees the directory
            await self.sync_shared(ps_uuid=ps.uuid)
            with call.tx() as s:
                inv = rt.inventories(s, [crud.get_row(s, rt, ps.uuid)])[0]
        return {"inventory": inv}

    @handler(DetachPrimaryStorageFromCluster)
    async def detach_from_cluster(
        self, msg: DetachPrimaryStorageFromCluster, call: Call
    ) -> dict[str, Any]:
        rt = self.node.resources.get("PrimaryStorage")
        with call.tx() as s:
            ps = crud.get_row(s, rt, msg.primaryStorageUuid, "primaryStorageUuid")
            cluster = links.row_of(call, s, "Cluster", msg.clusterUuid, "clusterUuid")
            links.remove_link(s, CLUSTER_LINK, ps, cluster)
            s.flush()
            inv = rt.inventories(s, [ps])[0]
        await links.publish_link(call, CLUSTER_LINK, "detached", ps.uuid, cluster.uuid)
        if ps.type == LOCAL:  # the cluster's hosts no longer count
            self._recompute(ps.uuid)
        elif ps.type in SHARED:
            await self.sync_shared(ps_uuid=ps.uuid)
            await self.unmount_nfs(ps.uuid, cluster.uuid)
        if ps.type == LOCAL or ps.type in SHARED:
            with call.tx() as s:
                inv = rt.inventories(s, [crud.get_row(s, rt, ps.uuid)])[0]
        return {"inventory": inv}
