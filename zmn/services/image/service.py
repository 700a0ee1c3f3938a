"""Images: VM templates and ISOs, stored on backup storages.

Adding an image is a long API: the image is recorded as Downloading on each backup storage
(whose free capacity is reserved in the same transaction), then marked Ready. Simulator
backup storages "download" instantly with a fixed size. Deleting an image gives the capacity
back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from sqlalchemy import select, update

from zmn.api.errors import Conflict, InvalidArgument, InvalidState
from zmn.core import crud, links
from zmn.core.db import new_uuid, utcnow
from zmn.core.resource import LinkSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.core.tags import TagPattern
from zmn.services.image.api import AddImage, ChangeImageState, DeleteImage, UpdateImage
from zmn.services.image.models import ImageBackupStorageRefVO, ImageVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

IMAGE_STATE = StateMachine(
    "Image",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
    allowed={"createVm": {"Enabled"}},
)

BS_LINK = LinkSpec(
    ImageBackupStorageRefVO, "Image", "imageUuid", "BackupStorage", "backupStorageUuid"
)

URL_SCHEMES = ("http", "https", "ftp", "file")
GiB = 1024**3
# What a simulator backup storage reports for any download: (virtual size, bytes stored).
SIMULATED_SIZE = {
    "RootVolumeTemplate": (10 * GiB, GiB),
    "DataVolumeTemplate": (10 * GiB, GiB),
    "ISO": (GiB, GiB),
}

BOOT_MODE = TagPattern(
    "bootMode::{bootMode}",
    "Image",
    "firmware the image boots with: Legacy or UEFI",
    validator=lambda t: (
        None if t["bootMode"] in ("Legacy", "UEFI") else "bootMode must be Legacy or UEFI"
    ),
)


def _bs_refs(session: Session, invs: list[dict[str, Any]]) -> None:
    by_image: dict[str, list[dict[str, Any]]] = {inv["uuid"]: [] for inv in invs}
    rows = session.scalars(
        select(ImageBackupStorageRefVO)
        .where(ImageBackupStorageRefVO.imageUuid.in_(list(by_image)))
        .order_by(ImageBackupStorageRefVO.backupStorageUuid)
    )
    for ref in rows:
        by_image[ref.imageUuid].append(
            {
                "backupStorageUuid": ref.backupStorageUuid,
                "installPath": ref.installPath,
                "status": ref.status,
            }
        )
    for inv in invs:
        inv["backupStorageRefs"] = by_image[inv["uuid"]]


def check_image_args(msg: AddImage) -> None:
    parsed = urlparse(msg.url)
    if parsed.scheme not in URL_SCHEMES or not (parsed.netloc or parsed.path):
        raise InvalidArgument(
            f"url: {msg.url!r} is not a {', '.join(s + '://' for s in URL_SCHEMES)} URL",
            code="IMAGE.INVALID_URL",
            field="url",
        )
    if (msg.format == "iso") != (msg.mediaType == "ISO"):
        raise InvalidArgument(
            f"mediaType: an image of format {msg.format} cannot have mediaType {msg.mediaType}"
            " (format iso goes with mediaType ISO, and only with it)",
            code="IMAGE.FORMAT_MISMATCH",
            field="mediaType",
        )
    if not msg.backupStorageUuids:
        raise InvalidArgument(
            "backupStorageUuids: give at least one backup storage", field="backupStorageUuids"
        )


class ImageService(Service):
    name = "image"
    summary = "images: VM templates and ISOs"
    requires = ("backupStorage",)
    state_machines = [IMAGE_STATE]
    tag_patterns = [BOOT_MODE]
    error_codes = {
        "IMAGE.NOT_FOUND": "no image with that UUID or name",
        "IMAGE.DUPLICATE_NAME": "an image with that name exists",
        "IMAGE.INVALID_URL": "the URL is not one the backup storage can download",
        "IMAGE.FORMAT_MISMATCH": "format iso goes with mediaType ISO, and only with it",
        "IMAGE.INVALID_STATE": "the state event is not allowed in the image's state",
        "BACKUP_STORAGE.INSUFFICIENT_CAPACITY": "the backup storage has not enough free capacity",
        "BACKUP_STORAGE.INVALID_STATE": "the backup storage is not Enabled and Connected",
    }

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Image",
                ImageVO,
                self.name,
                "image",
                columns=[
                    "uuid",
                    "name",
                    "format",
                    "mediaType",
                    "platform",
                    "state",
                    "status",
                    "size",
                ],
                enums={
                    "format": ["qcow2", "raw", "iso"],
                    "mediaType": ["RootVolumeTemplate", "DataVolumeTemplate", "ISO"],
                    "platform": ["Linux", "Windows", "Other"],
                    "architecture": ["x86_64", "aarch64"],
                    "state": sorted(IMAGE_STATE.states),
                    "status": ["Downloading", "Ready"],
                    "type": ["zstack"],
                },
                docs={
                    "size": "virtual size in bytes",
                    "actualSize": "bytes stored on each backup storage",
                },
                inventory_hook=_bs_refs,
                state_field="state",
                summary="a VM template or ISO on backup storages",
            )
        )
        registry.add_link(BS_LINK)

    @handler(AddImage)
    async def add_image(self, msg: AddImage, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Image", msg)
        if existing is not None:
            return {"inventory": existing}
        check_image_args(msg)
        size, actual = SIMULATED_SIZE[msg.mediaType]
        rt = self.node.resources.get("Image")
        uuid = msg.resourceUuid or new_uuid()
        bs_uuids = list(dict.fromkeys(msg.backupStorageUuids))
        with call.tx() as s:
            crud.unique_name(s, rt, msg.name)
            row = ImageVO(
                uuid=uuid,
                name=msg.name,
                url=msg.url,
                format=msg.format,
                mediaType=msg.mediaType,
                platform=msg.platform,
                guestOsType=msg.guestOsType,
                architecture=msg.architecture,
                system=msg.system,
                state="Enabled",
                status="Downloading",
            )
            crud.insert(call, s, "Image", row, msg)
            for bs_uuid in bs_uuids:
                install_path = self._reserve(call, s, bs_uuid, uuid, msg.format, actual)
                s.add(
                    ImageBackupStorageRefVO(
                        imageUuid=uuid, backupStorageUuid=bs_uuid, installPath=install_path
                    )
                )
            s.flush()
            inv = rt.inventories(s, [row])[0]
        await call.publish("/image/created", {"resourceType": "Image", "inventory": inv})
        await call.progress(50, "downloading")
        with call.tx() as s:
            row = crud.get_row(s, rt, uuid)
            row.size, row.actualSize, row.status = size, actual, "Ready"
            row.lastOpDate = utcnow()
            s.execute(
                update(ImageBackupStorageRefVO)
                .where(ImageBackupStorageRefVO.imageUuid == uuid)
                .values(status="Ready", lastOpDate=utcnow())
            )
            s.flush()
            inv = rt.inventories(s, [row])[0]
        await crud.publish_state_change(call, rt, inv, "Downloading", "Ready", "status")
        return {"inventory": inv}

    def _reserve(
        self, call: Call, s: Session, bs_uuid: str, image_uuid: str, fmt: str, size: int
    ) -> str:
        """Take ``size`` bytes of a backup storage's free capacity; the install path there."""
        bs_rt = self.node.resources.get("BackupStorage")
        bs = links.row_of(call, s, "BackupStorage", bs_uuid, "backupStorageUuids")
        if bs.state != "Enabled" or bs.status != "Connected":
            raise InvalidState(
                f"backupStorageUuids: backup storage {bs.name} ({bs.uuid}) is {bs.state} and"
                f" {bs.status}; images go only to Enabled, Connected backup storage",
                code="BACKUP_STORAGE.INVALID_STATE",
                field="backupStorageUuids",
                resourceType="BackupStorage",
                uuid=bs.uuid,
                state=bs.state,
                status=bs.status,
            )
        model = bs_rt.model
        done = s.execute(
            update(model)
            .where(model.uuid == bs_uuid, model.availableCapacity >= size)
            .values(availableCapacity=model.availableCapacity - size)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            raise Conflict(
                f"backupStorageUuids: backup storage {bs.name} has {bs.availableCapacity}"
                f" bytes free; the image needs {size}",
                code="BACKUP_STORAGE.INSUFFICIENT_CAPACITY",
                field="backupStorageUuids",
            )
        return f"{bs.url.rstrip('/')}/images/{image_uuid}.{fmt}"

    @handler(UpdateImage)
    async def update_image(self, msg: UpdateImage, call: Call) -> dict[str, Any]:
        links.check_rename(call, "Image", msg.uuid, msg.name)
        return await crud.update_fields(
            call,
            "Image",
            msg.uuid,
            {
                "name": msg.name,
                "description": msg.description,
                "platform": msg.platform,
                "guestOsType": msg.guestOsType,
            },
        )

    @handler(ChangeImageState)
    async def change_image_state(self, msg: ChangeImageState, call: Call) -> dict[str, Any]:
        return await crud.change_state(call, "Image", msg.uuid, msg.stateEvent, IMAGE_STATE)

    @handler(DeleteImage)
    async def delete_image(self, msg: DeleteImage, call: Call) -> dict[str, Any]:
        return await crud.delete(
            call, "Image", msg.uuid, cascade=msg.cascade, cleanup=self._release
        )

    def _release(self, s: Session, row: ImageVO) -> None:
        """Give each backup storage holding a copy its capacity back."""
        bs_rt = self.node.resources.types.get("BackupStorage")
        if bs_rt is None:
            return
        model = bs_rt.model
        bs_uuids = select(ImageBackupStorageRefVO.backupStorageUuid).where(
            ImageBackupStorageRefVO.imageUuid == row.uuid
        )
        s.execute(
            update(model)
            .where(model.uuid.in_(bs_uuids))
            .values(availableCapacity=model.availableCapacity + row.actualSize)
        )
