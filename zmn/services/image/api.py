from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api

Platform = Literal["Linux", "Windows", "Other"]


@api(resource="Image", verb="add", admin=True, long=True)
class AddImage(CreateMessage, kw_only=True):
    """Add an image (VM template or ISO) by downloading it to one or more backup storages."""

    name: Annotated[str, Doc("image name")]
    url: Annotated[
        str,
        Doc(
            "where to download it from: http://, https://, or file:// under image.file.allowedDirs"
        ),
    ]
    format: Annotated[Literal["qcow2", "raw", "iso"], Doc("disk format")]
    mediaType: Annotated[
        Literal["RootVolumeTemplate", "DataVolumeTemplate", "ISO"], Doc("what the image is for")
    ] = "RootVolumeTemplate"
    platform: Annotated[Platform, Doc("guest platform")] = "Linux"
    guestOsType: Annotated[str | None, Doc("guest OS, e.g. CentOS 7")] = None
    architecture: Annotated[Literal["x86_64", "aarch64"], Doc("CPU architecture")] = "x86_64"
    system: Annotated[bool, Doc("a system image (e.g. for virtual routers)")] = False
    backupStorageUuids: Annotated[
        list[str], Doc("backup storages (UUIDs or names) to put it on"), Ref("BackupStorage")
    ]


@api(resource="Image", verb="update", admin=True)
class UpdateImage(ApiMessage, kw_only=True):
    """Rename an image or change its description, platform or guest OS type."""

    uuid: Annotated[str, Doc("image UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None
    platform: Annotated[Platform | None, Doc("new guest platform")] = None
    guestOsType: Annotated[str | None, Doc("new guest OS type")] = None


@api(resource="Image", verb="delete", admin=True)
class DeleteImage(DeleteMessage, kw_only=True):
    """Delete an image and its copies on every backup storage."""


@api(resource="Image", verb="change-state", admin=True)
class ChangeImageState(ApiMessage, kw_only=True):
    """Enable or disable an image (a disabled image makes no new VMs)."""

    uuid: Annotated[str, Doc("image UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]


@api(resource="Image", verb="create-template", admin=True, long=True)
class CreateRootVolumeTemplateFromRootVolume(CreateMessage, kw_only=True):
    """Make a root volume template from a stopped VM's root volume (its disk, flattened).

    The VM must be Stopped. A new VM from the template starts with the disk as it was.
    """

    name: Annotated[str, Doc("template name")]
    rootVolumeUuid: Annotated[str, Doc("the VM's root volume (UUID)"), Ref("Volume")]
    backupStorageUuids: Annotated[
        list[str],
        Doc("backup storages to put it on (default: those holding the VM's image)"),
        Ref("BackupStorage"),
    ] = []
    platform: Annotated[Platform, Doc("guest platform")] = "Linux"
    guestOsType: Annotated[str | None, Doc("guest OS, e.g. Debian 12")] = None
    system: Annotated[bool, Doc("a system image")] = False


@api(internal=True)
class ExportVolumeToImageStore(ApiMessage, kw_only=True):
    """The hypervisor's part of a template: the volume's bytes, flattened, into an image
    store at ``installPath``; answers ``size`` (virtual), ``actualSize`` and ``checksum``."""

    volumeUuid: Annotated[str, Doc("volume UUID")]
    backupStorageUuid: Annotated[str, Doc("image store backup storage UUID")]
    installPath: Annotated[str, Doc("the file to write on the image store")]
