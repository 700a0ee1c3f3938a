from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api


@api(resource="BackupStorage", verb="add", admin=True)
class AddSimulatorBackupStorage(CreateMessage, kw_only=True):
    """Add a simulated backup storage (images download instantly)."""

    name: Annotated[str, Doc("backup storage name")]
    url: Annotated[str, Doc("where the storage is, e.g. /sim/bs")]
    totalCapacity: Annotated[int, Doc("total capacity in bytes")]
    availableCapacity: Annotated[
        int | None, Doc("free capacity in bytes (default: totalCapacity)")
    ] = None


@api(resource="BackupStorage", verb="update", admin=True)
class UpdateBackupStorage(ApiMessage, kw_only=True):
    """Rename a backup storage or change its description."""

    uuid: Annotated[str, Doc("backup storage UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="BackupStorage", verb="delete", admin=True)
class DeleteBackupStorage(DeleteMessage, kw_only=True):
    """Delete a backup storage (detached from its zones; its image copies are forgotten)."""


@api(resource="BackupStorage", verb="change-state", admin=True)
class ChangeBackupStorageState(ApiMessage, kw_only=True):
    """Enable or disable a backup storage (a disabled one takes no new images)."""

    uuid: Annotated[str, Doc("backup storage UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]


@api(resource="BackupStorage", verb="attach", admin=True)
class AttachBackupStorageToZone(ApiMessage, kw_only=True):
    """Attach a backup storage to a zone."""

    backupStorageUuid: Annotated[str, Doc("backup storage UUID or name"), Ref("BackupStorage")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]


@api(resource="BackupStorage", verb="detach", admin=True)
class DetachBackupStorageFromZone(ApiMessage, kw_only=True):
    """Detach a backup storage from a zone."""

    backupStorageUuid: Annotated[str, Doc("backup storage UUID or name"), Ref("BackupStorage")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
