"""Images: VM templates and ISOs, stored on backup storages.

Adding an image is a long API: the image is recorded as Downloading on each backup storage
(whose free capacity is reserved in the same transaction), then marked Ready. Simulator
backup storages "download" instantly with a fixed size. Image store backup storages get the
real bytes: the node streams the ``file://`` or ``http(s)://`` source to each over SFTP
(:mod:`zmn.services.image.download`, :mod:`zmn.services.backup_storage.imagestore`), recording
size, virtual size and SHA-256; a failed download removes the image and names the field.
Deleting an image gives the capacity back (and removes image store copies).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.api.errors import Conflict, InvalidArgument, InvalidState, ZmnError
from zmn.core import crud, links
from zmn.core.db import new_uuid, utcnow
from zmn.core.resource import LinkSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.core.tags import TagPattern
from zmn.services.backup_storage import imagestore
from zmn.services.image import download
from zmn.services.image.api import AddImage, ChangeImageState, DeleteImage, UpdateImage
from zmn.services.image.models import ImageBackupStorageRefVO, ImageVO
from zmn.services.image.template import ERRORS as TEMPLATE_ERRORS
from zmn.services.image.template import TemplateHandlers
from zmn.services.image.urlpolicy import UrlPolicy, check_source

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("zmn.image")
IMAGE_STORE = "ImageStoreBackupStorage"

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


def check_image_args(msg: AddImage, policy: UrlPolicy, *, admin: bool) -> None:
    check_source(msg.url, policy, admin=admin)
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


class ImageService(TemplateHandlers, Service):
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
        "IMAGE.DOWNLOAD_FAILED": "the download broke off or could not be stored",
        "IMAGE.MIXED_BACKUP_STORAGE": "simulator and real backup storages in one AddImage",
        **TEMPLATE_ERRORS,
    }

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Image",
                ImageVO,
                self.name,
                "image",
                aliases={"volume": "rootVolume"},  # ZStack's name
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
                    "checksum": "sha256:<hex> of the stored bytes (real backup storages)",
                    "url": "where the image was downloaded from (admins only)",
                },
                admin_fields=("url",),  # a URL may carry credentials or internal host names
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
        policy = UrlPolicy.from_config(self.node.config)
        check_image_args(msg, policy, admin=call.principal.is_admin)
        size, actual = SIMULATED_SIZE[msg.mediaType]
        uuid = msg.resourceUuid or new_uuid()
        bs_uuids = list(dict.fromkeys(msg.backupStorageUuids))
        real = self._real_stores(call, bs_uuids)
        if real:
            hint = await asyncio.to_thread(  # refused before recording
                partial(download.probe, msg.url, policy, admin=call.principal.is_admin)
            )
            size, actual = 0, hint or 0
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
            actualSize=actual if real else 0,
        )
        await self.record(call, row, msg, bs_uuids, actual)
        await call.progress(50, "downloading")
        checksum = None
        if real:
            try:
                size, stored, checksum = await self._download(call, uuid, msg, bs_uuids)
            except BaseException:
                await crud.delete(call, "Image", uuid, cascade=True, cleanup=self._release)
                raise
            self._adjust(bs_uuids, stored - actual)
            actual = stored
        return {"inventory": await self.ready(call, uuid, size, actual, checksum)}

    async def record(
        self, call: Call, row: ImageVO, msg: Any, bs_uuids: list[str], reserve: int
    ) -> dict[str, Any]:
        """Insert the image (status Downloading) with a copy on each backup storage, taking
        ``reserve`` bytes of each; publishes ``/image/created``."""
        rt = self.node.resources.get("Image")
        with call.tx() as s:
            crud.unique_name(s, rt, row.name)
            crud.insert(call, s, "Image", row, msg)
            for bs_uuid in bs_uuids:
                install_path = self._reserve(call, s, bs_uuid, row.uuid, row.format, reserve)
                s.add(
                    ImageBackupStorageRefVO(
                        imageUuid=row.uuid, backupStorageUuid=bs_uuid, installPath=install_path
                    )
                )
            s.flush()
            inv = rt.inventories(s, [row])[0]
        await call.publish("/image/created", {"resourceType": "Image", "inventory": inv})
        return inv

    async def ready(
        self, call: Call, uuid: str, size: int, actual: int, checksum: str | None
    ) -> dict[str, Any]:
        """Sizes and checksum recorded, the image and its copies Ready."""
        rt = self.node.resources.get("Image")
        with call.tx() as s:
            row = crud.get_row(s, rt, uuid)
            row.size, row.actualSize, row.status = size, actual, "Ready"
            row.checksum = checksum
            row.lastOpDate = utcnow()
            s.execute(
                update(ImageBackupStorageRefVO)
                .where(ImageBackupStorageRefVO.imageUuid == uuid)
                .values(status="Ready", lastOpDate=utcnow())
            )
            s.flush()
            inv = rt.inventories(s, [row])[0]
        await crud.publish_state_change(call, rt, inv, "Downloading", "Ready", "status")
        return inv

    def _real_stores(self, call: Call, bs_uuids: list[str]) -> bool:
        """True when the image goes to image stores (real bytes), False for simulators."""
        with call.tx() as s:
            types = {
                links.row_of(call, s, "BackupStorage", u, "backupStorageUuids").type
                for u in bs_uuids
            }
        if IMAGE_STORE in types and len(types) > 1:
            raise InvalidArgument(
                "backupStorageUuids: give image stores or simulator backup storages, not both",
                code="IMAGE.MIXED_BACKUP_STORAGE",
                field="backupStorageUuids",
            )
        return IMAGE_STORE in types

    async def _download(
        self, call: Call, uuid: str, msg: AddImage, bs_uuids: list[str]
    ) -> tuple[int, int, str]:
        """Stream the source to each image store: (virtual size, bytes, checksum)."""
        out: tuple[int, int, str] | None = None
        for bs_uuid in bs_uuids:
            wire = await call.call(
                call.node.apis.get("GetImageStoreAccess")(backupStorageUuid=bs_uuid)
            )
            access = imagestore.Access.from_wire(wire)
            dest = access.image_path(uuid, msg.format)

            def transfer(access: imagestore.Access = access, dest: str = dest) -> Any:
                policy = UrlPolicy.from_config(self.node.config)
                meter = download.Meter(download.chunks(msg.url, policy))
                imagestore.upload(access, meter, dest)
                return meter

            meter = await asyncio.to_thread(transfer)
            out = (meter.virtual_size(msg.format), meter.size, "sha256:" + meter.sha256.hexdigest())
            await call.progress(50 + 50 * (bs_uuids.index(bs_uuid) + 1) // len(bs_uuids))
        assert out is not None  # noqa: S101 - at least one backup storage (checked)
        return out

    def _adjust(self, bs_uuids: list[str], delta: int) -> None:
        """Take (or give back) what the download took beyond what was reserved."""
        bs_rt = self.node.resources.types.get("BackupStorage")
        if not delta or bs_rt is None:
            return
        model = bs_rt.model
        self.node.db_write(
            update(model)
            .where(model.uuid.in_(bs_uuids))
            .values(availableCapacity=model.availableCapacity - delta)
        )

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
        copies = self._store_copies(call, msg.uuid)
        out = await crud.delete(call, "Image", msg.uuid, cascade=msg.cascade, cleanup=self._release)
        for bs_uuid, path in copies:
            try:
                wire = await call.call(
                    call.node.apis.get("GetImageStoreAccess")(backupStorageUuid=bs_uuid)
                )
                await asyncio.to_thread(imagestore.remove, imagestore.Access.from_wire(wire), path)
            except ZmnError as exc:  # the record is gone; a stray file is only space
                log.warning("could not remove %s from backup storage %s: %s", path, bs_uuid, exc)
        return out

    def _store_copies(self, call: Call, uuid: str) -> list[tuple[str, str]]:
        bs_rt = self.node.resources.types.get("BackupStorage")
        if bs_rt is None:
            return []
        rt = self.node.resources.get("Image")
        ref = ImageBackupStorageRefVO
        with call.tx() as s:
            image = crud.get_row(s, rt, uuid)
            rows = s.execute(
                select(ref.backupStorageUuid, ref.installPath)
                .join(bs_rt.model, bs_rt.model.uuid == ref.backupStorageUuid)
                .where(ref.imageUuid == image.uuid, bs_rt.model.type == IMAGE_STORE)
            )
            return [(str(a), str(b)) for a, b in rows]

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
