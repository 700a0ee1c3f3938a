from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api


@api(resource="Volume", verb="create")
class CreateDataVolume(CreateMessage, kw_only=True):
    """Create a data volume (on a primary storage now, or when first attached)."""

    name: Annotated[str, Doc("volume name")]
    diskOfferingUuid: Annotated[
        str | None, Doc("disk offering giving the size"), Ref("DiskOffering")
    ] = None
    diskSize: Annotated[int | None, Doc("size in bytes, without a disk offering")] = None
    primaryStorageUuid: Annotated[
        str | None,
        Doc("primary storage to create it on (default: chosen when first attached)"),
        Ref("PrimaryStorage"),
    ] = None


@api(resource="Volume", verb="delete", long=True)
class DeleteDataVolume(DeleteMessage, kw_only=True):
    """Delete a data volume (detached from its VM first) and its snapshots."""


@api(resource="Volume", verb="update")
class UpdateVolume(ApiMessage, kw_only=True):
    """Rename a volume or change its description."""

    uuid: Annotated[str, Doc("volume UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="Volume", verb="change-state")
class ChangeVolumeState(ApiMessage, kw_only=True):
    """Enable or disable a volume (a disabled data volume cannot be attached)."""

    uuid: Annotated[str, Doc("volume UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]


@api(resource="Volume", verb="attach", long=True)
class AttachDataVolumeToVm(ApiMessage, kw_only=True):
    """Attach a data volume to a VM (hot-plugged when it runs)."""

    volumeUuid: Annotated[str, Doc("data volume UUID or name"), Ref("Volume")]
    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]


@api(resource="Volume", verb="detach", long=True)
class DetachDataVolumeFromVm(ApiMessage, kw_only=True):
    """Detach a data volume from its VM."""

    uuid: Annotated[str, Doc("data volume UUID or name")]


@api(resource="Volume", verb="resize-root", long=True)
class ResizeRootVolume(ApiMessage, kw_only=True):
    """Grow a root volume to ``size`` bytes, online when its VM runs.

    The guest of a running VM sees the bigger disk at once; a stopped VM's volume grows on its
    storage. A volume never shrinks."""

    volumeUuid: Annotated[str, Doc("root volume UUID or name"), Ref("Volume")]
    size: Annotated[int, Doc("new size in bytes, not smaller than now")]


@api(resource="Volume", verb="resize-data", long=True)
class ResizeDataVolume(ApiMessage, kw_only=True):
    """Grow a data volume to ``size`` bytes, online when its VM runs.

    Otherwise it grows on its storage (or, not made yet, is made at that size). A volume
    never shrinks."""

    volumeUuid: Annotated[str, Doc("data volume UUID or name"), Ref("Volume")]
    size: Annotated[int, Doc("new size in bytes, not smaller than now")]


@api(resource="VolumeSnapshot", verb="create", long=True)
class CreateVolumeSnapshot(CreateMessage, kw_only=True):
    """Take a snapshot of a volume."""

    volumeUuid: Annotated[str, Doc("volume UUID or name"), Ref("Volume")]
    name: Annotated[str, Doc("snapshot name")]


@api(resource="VolumeSnapshot", verb="revert", long=True)
class RevertVolumeFromSnapshot(ApiMessage, kw_only=True):
    """Put a volume back to a snapshot (its VM must be Stopped)."""

    uuid: Annotated[str, Doc("snapshot UUID or name")]


@api(resource="VolumeSnapshot", verb="delete")
class DeleteVolumeSnapshot(DeleteMessage, kw_only=True):
    """Delete a volume snapshot."""


@api(resource="VolumeSnapshot", verb="update")
class UpdateVolumeSnapshot(ApiMessage, kw_only=True):
    """Rename a snapshot or change its description."""

    uuid: Annotated[str, Doc("snapshot UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


# ----------------------------------------------------------------------------- internal


@api(internal=True)
class CreateVmVolume(ApiMessage, kw_only=True):
    """Record a VM's volume on a primary storage whose bytes are already reserved."""

    name: Annotated[str, Doc("volume name")]
    type: Annotated[Literal["Root", "Data"], Doc("Root or Data")]
    size: Annotated[int, Doc("bytes")]
    primaryStorageUuid: Annotated[str, Doc("primary storage UUID")]
    vmInstanceUuid: Annotated[str | None, Doc("VM UUID")] = None
    deviceId: Annotated[int | None, Doc("device order in the VM")] = None
    rootImageUuid: Annotated[str | None, Doc("image the root volume comes from")] = None
    diskOfferingUuid: Annotated[str | None, Doc("disk offering")] = None
    format: Annotated[str, Doc("disk format")] = "qcow2"


@api(internal=True)
class RemoveVolumes(ApiMessage, kw_only=True):
    """Remove volume rows (and their snapshots), giving the bytes back or not."""

    volumeUuids: Annotated[list[str], Doc("volume UUIDs")]
    releaseCapacity: Annotated[bool, Doc("give the bytes back to the primary storage")] = True


@api(internal=True)
class ExpungeVmVolumes(ApiMessage, kw_only=True):
    """A VM is expunged: its root volume goes, its data volumes are detached."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID")]


@api(internal=True)
class DeleteVolume(DeleteMessage, kw_only=True):
    """Cascade from a primary-storage delete: a data volume is deleted, a root volume's VM
    is destroyed and expunged."""
