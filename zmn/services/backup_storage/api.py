from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, Secret, api


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


@api(resource="BackupStorage", verb="add-image-store", admin=True, long=True)
class AddImageStoreBackupStorage(CreateMessage, kw_only=True):
    """Add an image store: a directory on a machine the node reaches over SSH (host key pinned
    on first contact). Images are written to ``url/images``; hosts get them through the node."""

    name: Annotated[str, Doc("backup storage name")]
    url: Annotated[str, Doc("absolute directory on that machine, e.g. /var/lib/zstack/images")]
    hostname: Annotated[str, Doc("IP address or host name of the machine")]
    username: Annotated[str, Doc("SSH user: root, or one owning the directory")] = "root"
    password: Annotated[str | None, Doc("SSH password (or give sshPrivateKey)"), Secret()] = None
    sshPrivateKey: Annotated[
        str | None, Doc("path, on the management node, of the SSH private key to log in with")
    ] = None
    sshPort: Annotated[int, Doc("SSH port")] = 22


@api(internal=True)
class GetImageStoreAccess(ApiMessage, kw_only=True):
    """SSH access to an image store backup storage (credentials, pinned key, directory)."""

    backupStorageUuid: Annotated[str, Doc("backup storage UUID")]
