"""The KVM part of a template (``ExportVolumeToImageStore``): a root volume on a host's local
storage flattened on the host (``/v1/storage/volume/export``: ``qemu-img convert`` of the
overlay and its image into one qcow2 under ``ROOT/export/``), copied to the image store over
SFTP through the node (both SSH host keys pinned, SHA-256 computed on the way), the host's
temporary file removed whatever happened.
"""

from __future__ import annotations

import asyncio
import posixpath
from typing import TYPE_CHECKING, Any

from zmn.api.errors import OperationFailed
from zmn.services.kvm.storage import (
    SHARED,
    _copy,
    host_ref,
    shared_host,
    storage_roots,
    store_and_host,
    vm_host,
)
from zmn.services.primary_storage.models import LocalStorageVolumeRefVO

if TYPE_CHECKING:
    from zmn.services.kvm.hosttype import KvmHostType


async def export_volume(
    ht: KvmHostType, volume_uuid: str, bs_uuid: str, install_path: str
) -> dict[str, Any]:
    rt = ht.node.resources.get("Volume")
    with ht.node.db.tx() as s:
        vol = s.get(rt.model, volume_uuid)
        ref = s.get(LocalStorageVolumeRefVO, volume_uuid)
        if vol is None or not vol.installPath:
            raise OperationFailed(
                f"volume {volume_uuid} has no file on a KVM host's local storage (a volume is"
                " made there when its VM first starts)",
                code="KVM.VOLUME_NOT_MADE",
                volumeUuid=volume_uuid,
            )
        path, ps_uuid, vm_uuid = (
            str(vol.installPath),
            str(vol.primaryStorageUuid),
            vol.vmInstanceUuid,
        )
        host_uuid = None if ref is None else ref.hostUuid
    kind, root = storage_roots(ht, {ps_uuid}).get(ps_uuid, ("", ""))
    if not root:
        raise OperationFailed(
            f"volume {volume_uuid} is not on local or shared primary storage; templates of KVM"
            " volumes need one of those",
            code="KVM.UNSUPPORTED_OPERATION",
            operation="export",
        )
    if kind in SHARED:  # any host that sees the storage (the VM's, when it has one)
        host_uuid = await shared_host(ht, ps_uuid, vm_host(ht, vm_uuid))
    if host_uuid is None:
        raise OperationFailed(
            f"volume {volume_uuid} has no file on a KVM host's local storage (a volume is"
            " made there when its VM first starts)",
            code="KVM.VOLUME_NOT_MADE",
            volumeUuid=volume_uuid,
        )
    host = host_ref(ht, host_uuid)
    row = ht.record(host.uuid)
    client = ht.client(host, row)
    tmp = posixpath.join(root, "export", f"{volume_uuid}.qcow2")
    timeout = float(ht.node.global_config.get("kvm", "task.timeout"))
    body = {"root": root, "path": path, "dest": tmp, "vmUuid": vm_uuid}
    try:
        made = await ht.endpoint.run_task(
            client, host.uuid, "/v1/storage/volume/export", body, timeout
        )
        store, access, row = await store_and_host(ht, host, bs_uuid)
        checksum, count = await asyncio.to_thread(
            _copy, ht.ssh_target(host, row), row.hostKey, tmp, store,
            str(access["hostKey"]), install_path, "",
        )  # fmt: skip
    finally:
        await client.post("/v1/storage/volume/delete", {"root": root, "path": tmp})
    return {"size": int(made["virtualSize"]), "actualSize": count, "checksum": checksum}
