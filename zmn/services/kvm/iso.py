"""ISOs on KVM hosts: every KVM VM has an IDE CD-ROM drive (``hdc``), empty or holding the
ISO named by its ``iso::`` tag. The ISO is fetched into the host's image cache like a
template (``ROOT/cache/<imageUuid>.iso``, from an image store, SHA-256 checked); an ISO that
is only on a simulator backup storage cannot be fetched (``KVM.IMAGE_NOT_FETCHABLE``). A VM
created from the ISO boots from the CD-ROM first. ``attachIso``/``detachIso`` change the
medium of a running domain (``/v1/vm/change-media``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.api.errors import OperationFailed
from zmn.core.models import TagVO
from zmn.services.host.hosttype import HostRef
from zmn.services.kvm.storage import _image, fetch_image, storage_roots

if TYPE_CHECKING:
    from zmn.services.kvm.agentclient import AgentClient
    from zmn.services.kvm.hosttype import KvmHostType

CDROM = {"device": "cdrom", "bus": "ide", "format": "raw", "deviceId": 2}


def iso_tag(ht: KvmHostType, vm_uuid: str) -> str | None:
    with ht.node.db.tx() as s:
        tag = s.scalar(
            select(TagVO.tag).where(
                TagVO.resourceUuid == vm_uuid, TagVO.type == "System", TagVO.tag.like("iso::%")
            )
        )
    return None if tag is None else str(tag).split("::", 1)[1]


async def iso_path(
    ht: KvmHostType, host: HostRef, client: AgentClient, vm: Mapping[str, Any], iso_uuid: str
) -> str:
    """The ISO's file in the host's cache (fetched when missing)."""
    image = _image(ht, iso_uuid)
    ps = {str(v.get("primaryStorageUuid")) for v in vm.get("allVolumes") or []
          if v.get("type") == "Root"}  # fmt: skip
    roots = {u: root for u, (_kind, root) in storage_roots(ht, ps).items()}
    if image is None or not roots:
        raise OperationFailed(
            f"VM {vm.get('name')}: ISO {iso_uuid} needs the VM's root volume on local or shared"
            " primary storage (where the host keeps its image cache)",
            code="KVM.UNSUPPORTED_OPERATION",
            operation="attachIso",
        )
    root = next(iter(roots.values()))
    cache = posixpath.join(root, "cache", f"{iso_uuid}.iso")
    await client.post("/v1/storage/capacity", {"path": root})  # DIR/cache exists
    if not (await client.post("/v1/storage/stat", {"path": cache}))["exists"]:
        await fetch_image(ht, host, image, cache)
    return cache


async def cdrom_for_start(
    ht: KvmHostType, host: HostRef, client: AgentClient, vm: Mapping[str, Any], iso: str | None
) -> tuple[dict[str, Any], list[str]]:
    """The CD-ROM drive of the domain and its boot order (``iso``: the VM's
    :func:`iso_tag`)."""
    if iso is None:
        return {**CDROM, "path": ""}, ["hd"]
    path = await iso_path(ht, host, client, vm, iso)
    return {**CDROM, "path": path}, ["cdrom", "hd"] if vm.get("imageUuid") == iso else [
        "hd",
        "cdrom",
    ]


async def change_media(
    ht: KvmHostType, host: HostRef, client: AgentClient, vm: Mapping[str, Any], iso: str | None
) -> dict[str, Any]:
    path = "" if iso is None else await iso_path(ht, host, client, vm, iso)
    await client.post("/v1/vm/change-media", {"uuid": vm["uuid"], "disk": {**CDROM, "path": path}})
    return {"state": vm.get("state")}
