"""Backup storage: where images live; not in a zone, but attached to zones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidArgument
from zmn.core import crud, links
from zmn.core.resource import LinkSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.services.backup_storage.api import (
    AddSimulatorBackupStorage,
    AttachBackupStorageToZone,
    ChangeBackupStorageState,
    DeleteBackupStorage,
    DetachBackupStorageFromZone,
    UpdateBackupStorage,
)
from zmn.services.backup_storage.models import BackupStorageVO, BackupStorageZoneRefVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

BS_STATE = StateMachine(
    "BackupStorage",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
    allowed={"addImage": {"Enabled"}},
)

ZONE_LINK = LinkSpec(
    BackupStorageZoneRefVO, "BackupStorage", "backupStorageUuid", "Zone", "zoneUuid"
)


def _attached_zones(session: Session, invs: list[dict[str, Any]]) -> None:
    for inv in invs:
        inv["attachedZoneUuids"] = links.linked_uuids(
            session, ZONE_LINK, "zoneUuid", "backupStorageUuid", inv["uuid"]
        )


class BackupStorageService(Service):
    name = "backupStorage"
    summary = "backup storage"
    requires = ("zone",)
    state_machines = [BS_STATE]
    error_codes = {
        "BACKUP_STORAGE.NOT_FOUND": "no backup storage with that UUID or name",
        "BACKUP_STORAGE.DUPLICATE_NAME": "a backup storage with that name exists",
        "BACKUP_STORAGE.INVALID_STATE": "the state event or operation is not allowed in its state",
        "BACKUP_STORAGE.ALREADY_ATTACHED": "the backup storage is already attached to the zone",
        "BACKUP_STORAGE.NOT_ATTACHED": "the backup storage is not attached to the zone",
        "STORAGE.INVALID_CAPACITY": "a capacity is negative, or free exceeds total",
    }

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "BackupStorage",
                BackupStorageVO,
                self.name,
                "backup-storage",
                columns=[
                    "uuid",
                    "name",
                    "type",
                    "state",
                    "status",
                    "availableCapacity",
                    "totalCapacity",
                ],
                enums={
                    "type": ["Simulator", "ImageStoreBackupStorage", "SftpBackupStorage"],
                    "state": sorted(BS_STATE.states),
                    "status": ["Connecting", "Connected", "Disconnected"],
                },
                docs={
                    "totalCapacity": "bytes the storage offers for images",
                    "availableCapacity": "bytes not yet taken by images",
                },
                admin_only=True,
                inventory_hook=_attached_zones,
                state_field="state",
                summary="storage for images, attached to zones",
            )
        )
        registry.add_link(ZONE_LINK)

    @handler(AddSimulatorBackupStorage)
    async def add_simulator_backup_storage(
        self, msg: AddSimulatorBackupStorage, call: Call
    ) -> dict[str, Any]:
        available = msg.totalCapacity if msg.availableCapacity is None else msg.availableCapacity
        links.check_capacities(msg.totalCapacity, available)
        if not msg.url.strip():
            raise InvalidArgument("url must not be empty", field="url")
        rt = self.node.resources.get("BackupStorage")
        row = BackupStorageVO(
            name=msg.name,
            type="Simulator",
            url=msg.url,
            state="Enabled",
            status="Connected",
            totalCapacity=msg.totalCapacity,
            availableCapacity=available,
        )
        return await crud.create(
            call, "BackupStorage", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(UpdateBackupStorage)
    async def update_backup_storage(self, msg: UpdateBackupStorage, call: Call) -> dict[str, Any]:
        links.check_rename(call, "BackupStorage", msg.uuid, msg.name)
        return await crud.update_fields(
            call, "BackupStorage", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(ChangeBackupStorageState)
    async def change_backup_storage_state(
        self, msg: ChangeBackupStorageState, call: Call
    ) -> dict[str, Any]:
        return await crud.change_state(call, "BackupStorage", msg.uuid, msg.stateEvent, BS_STATE)

    @handler(DeleteBackupStorage)
    async def delete_backup_storage(self, msg: DeleteBackupStorage, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "BackupStorage", msg.uuid, cascade=msg.cascade)

    @handler(AttachBackupStorageToZone)
    async def attach_to_zone(self, msg: AttachBackupStorageToZone, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("BackupStorage")
        with call.tx() as s:
            bs = crud.get_row(s, rt, msg.backupStorageUuid, "backupStorageUuid")
            zone = links.row_of(call, s, "Zone", msg.zoneUuid, "zoneUuid")
            links.add_link(s, ZONE_LINK, bs, zone)
            s.flush()
            inv = rt.inventories(s, [bs])[0]
        await links.publish_link(call, ZONE_LINK, "attached", bs.uuid, zone.uuid)
        return {"inventory": inv}

    @handler(DetachBackupStorageFromZone)
    async def detach_from_zone(
        self, msg: DetachBackupStorageFromZone, call: Call
    ) -> dict[str, Any]:
        rt = self.node.resources.get("BackupStorage")
        with call.tx() as s:
            bs = crud.get_row(s, rt, msg.backupStorageUuid, "backupStorageUuid")
            zone = links.row_of(call, s, "Zone", msg.zoneUuid, "zoneUuid")
            links.remove_link(s, ZONE_LINK, bs, zone)
            s.flush()
            inv = rt.inventories(s, [bs])[0]
        await links.publish_link(call, ZONE_LINK, "detached", bs.uuid, zone.uuid)
        return {"inventory": inv}
