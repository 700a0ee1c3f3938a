"""Backup storage: where images live; not in a zone, but attached to zones."""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidArgument
from zmn.core import crud, links
from zmn.core.db import new_uuid
from zmn.core.resource import LinkSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.services.backup_storage import imagestore
from zmn.services.backup_storage.api import (
    AddImageStoreBackupStorage,
    AddSimulatorBackupStorage,
    AttachBackupStorageToZone,
    ChangeBackupStorageState,
    DeleteBackupStorage,
    DetachBackupStorageFromZone,
    GetImageStoreAccess,
    UpdateBackupStorage,
)
from zmn.services.backup_storage.models import (
    BackupStorageVO,
    BackupStorageZoneRefVO,
    ImageStoreBackupStorageVO,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("zmn.backup_storage")

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
        "BACKUP_STORAGE.NO_CREDENTIALS": "an image store needs a password or an SSH private key",
        "BACKUP_STORAGE.BAD_URL": "the directory cannot be made or used on the machine",
        "BACKUP_STORAGE.NOT_IMAGE_STORE": "the backup storage is not an image store",
    }

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "BackupStorage",
                BackupStorageVO,
                self.name,
                "backup-storage",
                aliases={"attachedZoneUuids": "zone.uuid"},  # ZStack's list field
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

    # ----------------------------------------------------------------- image store

    @handler(AddImageStoreBackupStorage)
    async def add_image_store_backup_storage(
        self, msg: AddImageStoreBackupStorage, call: Call
    ) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "BackupStorage", msg)
        if existing is not None:
            return {"inventory": existing}
        url = _check_image_store(msg)
        rt = self.node.resources.get("BackupStorage")
        with call.tx() as s:
            crud.unique_name(s, rt, msg.name)
        access = imagestore.Access(
            msg.hostname,
            msg.sshPort,
            msg.username,
            msg.password,
            os.path.abspath(msg.sshPrivateKey) if msg.sshPrivateKey else None,
            None,
            url,
        )
        # pinned on first contact (no login), then every connection trusts that key only
        key = await asyncio.to_thread(imagestore.first_contact, access)
        access = imagestore.Access(**{**access.__dict__, "host_key": key})
        total, free = await asyncio.to_thread(imagestore.prepare, access)
        row = BackupStorageVO(
            uuid=msg.resourceUuid or new_uuid(),
            name=msg.name,
            type="ImageStoreBackupStorage",
            url=url,
            state="Enabled",
            status="Connected",
            totalCapacity=total,
            availableCapacity=free,
        )
        record = ImageStoreBackupStorageVO(
            uuid=row.uuid,
            hostname=access.hostname,
            sshPort=access.port,
            username=access.username,
            password=access.password,
            sshPrivateKey=access.key_file,
            hostKey=key,
        )

        def check(s: Session) -> None:
            crud.unique_name(s, rt, msg.name)
            s.add(record)  # in the storage's own transaction (the FK orders the inserts)

        out = await crud.create(call, "BackupStorage", row, msg, check=check)
        log.info("image store %s on %s: host key pinned on first contact", msg.name, access)
        return out

    @handler(GetImageStoreAccess)
    async def get_image_store_access(self, msg: GetImageStoreAccess, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            bs = s.get(BackupStorageVO, msg.backupStorageUuid)
            rec = s.get(ImageStoreBackupStorageVO, msg.backupStorageUuid)
            if bs is None or rec is None:
                raise InvalidArgument(
                    f"backup storage {msg.backupStorageUuid} is not an image store",
                    code="BACKUP_STORAGE.NOT_IMAGE_STORE",
                    field="backupStorageUuid",
                )
            return {
                "hostname": rec.hostname,
                "sshPort": rec.sshPort,
                "username": rec.username,
                "password": rec.password,
                "sshPrivateKey": rec.sshPrivateKey,
                "hostKey": rec.hostKey,
                "url": bs.url,
            }


def _check_image_store(msg: AddImageStoreBackupStorage) -> str:
    if not msg.password and not msg.sshPrivateKey:
        raise InvalidArgument(
            "give password or sshPrivateKey to log in to the image store",
            code="BACKUP_STORAGE.NO_CREDENTIALS",
            field="password",
        )
    if msg.sshPrivateKey and not os.access(msg.sshPrivateKey, os.R_OK):
        raise InvalidArgument(
            f"sshPrivateKey: cannot read {msg.sshPrivateKey} on the management node",
            field="sshPrivateKey",
        )
    if not 1 <= msg.sshPort <= 65535:
        raise InvalidArgument(f"sshPort must be 1-65535, got {msg.sshPort}", field="sshPort")
    if not msg.hostname.strip() or any(c.isspace() for c in msg.hostname):
        raise InvalidArgument(f"hostname {msg.hostname!r} is not a host name", field="hostname")
    url = msg.url.strip()
    if not url.startswith("/") or ".." in url.split("/") or posixpath.normpath(url) == "/":
        raise InvalidArgument(
            f"url: {msg.url!r} must be an absolute directory other than /", field="url"
        )
    return posixpath.normpath(url)
