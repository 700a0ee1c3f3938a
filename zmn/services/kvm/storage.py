"""Local primary storage on KVM hosts: volumes made by the agent with ``qemu-img``.

* :class:`KvmLocalStorage` is the primary storage service's ``LocalStorageBackend``: the
  capacity of a host's directory (``/v1/storage/capacity``, a ``statvfs``) and volume
  deletion (``/v1/storage/volume/delete``).
* :func:`prepare_volumes` runs before a VM starts and before a volume is hot-plugged: each
  volume on local storage is placed on this host (``PlaceLocalVolume``; a volume made on
  another host is refused: there is no storage migration) and made if missing: a root volume
  as a qcow2 overlay on its image in the host's cache (``qemu-img create -b
  DIR/cache/IMG.qcow2 -F qcow2``), a data volume empty. A volume on other storage (the
  simulator's, attached to a KVM cluster) is made empty by the same agent call
  (``/v1/storage/volume/create``: idempotent, and atomic by a rename).
* :class:`KvmLocalSnapshots` is the volume service's ``VolumeSnapshotStorage`` and
  ``VolumeResizeStorage`` for local storage: snapshots of volumes no running domain holds (VM
  Stopped, volume detached), their revert and deletion, and their growth, go to the agent of
  the host holding the file (``/v1/storage/volume/snapshot[/delete|/revert]``: ``qemu-img
  snapshot -c|-d|-a``; ``/v1/storage/volume/resize``: ``qemu-img resize``).
* the image cache: when ``DIR/cache/<imageUuid>.qcow2`` is missing on a host, the node copies
  it there from the image store backup storage, streaming SFTP to SFTP (both machines' SSH
  host keys pinned), into a ``.part`` file that is renamed only after its SHA-256 matched the
  one recorded at ``AddImage``. The host needs nothing but sshd and its agent; the login user
  must be able to write DIR (root, or the directory's owner).
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidArgument, OperationFailed
from zmn.core.service import Call
from zmn.services.host.hosttype import HostRef
from zmn.services.kvm import ssh
from zmn.services.kvm.reads import reading, row_of
from zmn.services.primary_storage.models import LocalStorageVolumeRefVO

if TYPE_CHECKING:
    from zmn.services.kvm.agentclient import AgentBatch, AgentClient
    from zmn.services.kvm.hosttype import KvmHostType
    from zmn.services.kvm.reads import Reader

LOCAL = "LocalStorage"
SHARED = ("SharedMountPoint", "NFS")  # one directory all hosts see (primary_storage.shared)
FILE_STORAGE = (LOCAL, *SHARED)
IMAGE_STORE = "ImageStoreBackupStorage"
CHUNK = 1 << 20


def _call(ht: KvmHostType, api: str = "HypervisorOp") -> Call:
    return Call(ht.node, ht.node.admin_principal(), api)


async def _internal(ht: KvmHostType, api: str, **args: Any) -> dict[str, Any]:
    cls: Any = ht.node.apis.get(api)
    return dict(await _call(ht, api).call(cls(**args)))


def host_ref(ht: KvmHostType, uuid: str) -> HostRef:
    model = ht.node.resources.get("Host").model
    with ht.node.db.tx() as s:
        h = s.get(model, uuid)
        if h is None:
            raise OperationFailed(f"host {uuid} is gone", code="KVM.NO_RECORD")
        return HostRef(h.uuid, h.name, h.managementIp, h.clusterUuid, h.hypervisorType)


def local_storages(ht: KvmHostType, ps_uuids: set[str]) -> dict[str, str]:
    """Local primary storage UUID -> its directory, for those of ``ps_uuids``."""
    rt = ht.node.resources.types.get("PrimaryStorage")
    if rt is None or not ps_uuids:
        return {}
    with ht.node.db.tx() as s:
        rows = [s.get(rt.model, u) for u in ps_uuids]
        return {r.uuid: r.url for r in rows if r is not None and r.type == LOCAL}


def storage_roots(
    ht: KvmHostType, ps_uuids: set[str], conn: Reader | None = None
) -> dict[str, tuple[str, str]]:
    """Local or shared primary storage UUID -> (its type, the directory hosts see), for
    those of ``ps_uuids``: both hold qcow2 files in the same layout."""
    rt = ht.node.resources.types.get("PrimaryStorage")
    if rt is None or not ps_uuids:
        return {}
    with reading(ht.node, conn) as s:
        rows = [row_of(s, rt.model, u) for u in ps_uuids]
        return {
            r.uuid: (str(r.type), str(r.mountPath or r.url))
            for r in rows
            if r is not None and r.type in FILE_STORAGE
        }


async def shared_host(ht: KvmHostType, ps_uuid: str, host_uuid: str | None = None) -> str:
    """``host_uuid`` when it sees the shared storage (else the error says why not), or any
    connected host that does."""
    got = await _internal(
        ht, "GetSharedStorageHost", primaryStorageUuid=ps_uuid, hostUuid=host_uuid
    )
    return str(got["hostUuid"])


def vm_host(ht: KvmHostType, vm_uuid: str | None) -> str | None:
    """The host a VM runs on (None: stopped or unknown)."""
    rt = ht.node.resources.types.get("VmInstance")
    if not vm_uuid or rt is None:
        return None
    with ht.node.db.tx() as s:
        row = s.get(rt.model, vm_uuid)
        return None if row is None else row.hostUuid


def _image(ht: KvmHostType, uuid: str) -> dict[str, Any] | None:
    rt = ht.node.resources.get("Image")
    with ht.node.db.tx() as s:
        row = s.get(rt.model, uuid)
        return None if row is None else dict(rt.inventories(s, [row])[0])


class KvmLocalStorage:
    """``LocalStorageBackend`` for KVM hosts (through their agents)."""

    hypervisor_type = "KVM"

    def __init__(self, ht: KvmHostType) -> None:
        self.ht = ht

    def _client(self, host_uuid: str, timeout: float | None = None) -> AgentClient:
        return self.ht.client(host_ref(self.ht, host_uuid), self.ht.record(host_uuid), timeout)

    async def storage_capacity(self, host_uuid: str, path: str) -> tuple[int, int]:
        got = await self._client(host_uuid, 15.0).post("/v1/storage/capacity", {"path": path})
        return int(got["totalCapacity"]), int(got["availableCapacity"])

    async def delete_volume(self, host_uuid: str, root: str, path: str) -> None:
        await self._client(host_uuid).post(
            "/v1/storage/volume/delete", {"root": root, "path": path}
        )

    async def volume_stat(self, host_uuid: str, path: str) -> dict[str, Any]:
        return dict(await self._client(host_uuid, 30.0).post("/v1/storage/stat", {"path": path}))

    async def copy_volume(
        self, src_uuid: str, dst_uuid: str, root: str, path: str, tmp: str, image_uuid: str | None
    ) -> None:
        """The volume file ``path`` from one host's ``root`` to the same path on another's:
        its image first (a root volume's backing file, fetched into the cache when missing),
        then the file over SFTP through the node (both SSH host keys pinned) into ``tmp``,
        renamed into place when whole."""
        ht = self.ht
        src, dst = host_ref(ht, src_uuid), host_ref(ht, dst_uuid)
        dst_client = self._client(dst_uuid)
        await dst_client.post("/v1/storage/capacity", {"path": root})
        image = _image(ht, image_uuid) if image_uuid else None
        if image is not None and image.get("mediaType") != "ISO":
            await ensure_cached(ht, dst, dst_client, image, root, made=True)
        src_row, dst_row = ht.record(src.uuid), ht.record(dst.uuid)
        if src_row.hostKey is None or dst_row.hostKey is None:
            raise OperationFailed(
                f"host {src.name if src_row.hostKey is None else dst.name} has no pinned SSH key",
                code="KVM.NO_RECORD",
            )
        await asyncio.to_thread(
            _copy, ht.ssh_target(src, src_row), src_row.hostKey, path,
            ht.ssh_target(dst, dst_row), dst_row.hostKey, path, "", tmp,
        )  # fmt: skip

    async def shared_check(
        self, host_uuid: str, path: str, ps_uuid: str, nonce: str, write: bool
    ) -> dict[str, Any]:
        body = {"path": path, "primaryStorageUuid": ps_uuid, "nonce": nonce, "write": write}
        return dict(await self._client(host_uuid, 15.0).post("/v1/storage/shared/check", body))

    async def nfs_mount(
        self, host_uuid: str, url: str, path: str, options: str, timeout: int
    ) -> None:
        body = {"url": url, "path": path, "options": options, "timeout": timeout}
        await self._client(host_uuid, timeout + 10.0).post("/v1/storage/nfs/mount", body)

    async def nfs_umount(self, host_uuid: str, path: str) -> None:
        await self._client(host_uuid, 30.0).post("/v1/storage/nfs/umount", {"path": path})


class KvmLocalSnapshots:
    """``VolumeSnapshotStorage`` for local (and, one instance per type, shared) primary
    storage on KVM hosts."""

    def __init__(self, ht: KvmHostType, primary_storage_type: str = LOCAL) -> None:
        self.ht = ht
        self.primary_storage_type = primary_storage_type

    async def _shared_holder(self, volume: Mapping[str, Any]) -> HostRef | None:
        """Shared storage: the host running the volume's VM, else any host that sees it."""
        vm = vm_host(self.ht, volume.get("vmInstanceUuid"))
        host = host_ref(self.ht, await shared_host(self.ht, str(volume["primaryStorageUuid"]), vm))
        return host if host.hypervisorType == "KVM" else None

    async def _holder(self, volume: Mapping[str, Any]) -> HostRef | None:
        """The KVM host whose directory holds the volume's file; None when the volume is on
        a host of another hypervisor type. A volume never made on any host is refused."""
        if self.primary_storage_type != LOCAL:
            return await self._shared_holder(volume)
        with self.ht.node.db.tx() as s:
            ref = s.get(LocalStorageVolumeRefVO, str(volume["uuid"]))
            host_uuid = None if ref is None else ref.hostUuid
        if host_uuid is None:
            raise OperationFailed(
                f"volume {volume.get('name')} ({volume['uuid']}) has no file on any host yet"
                " (a volume on local storage is made when its VM starts or it is attached);"
                " there is nothing to snapshot",
                code="KVM.VOLUME_NOT_MADE",
                volumeUuid=volume["uuid"],
            )
        host = host_ref(self.ht, host_uuid)
        return host if host.hypervisorType == "KVM" else None

    async def _post(
        self, path: str, volume: Mapping[str, Any], snapshot_uuid: str, vm_uuid: str | None
    ) -> bool:
        host = await self._holder(volume)
        if host is None:
            return False
        body: dict[str, Any] = {"path": volume["installPath"], "name": snapshot_uuid}
        if vm_uuid:
            body["vmUuid"] = vm_uuid  # the agent checks no running domain holds the file
        await self.ht.client(host, self.ht.record(host.uuid)).post(path, body)
        return True

    async def take_snapshot(
        self, volume: Mapping[str, Any], snapshot_uuid: str, vm_uuid: str | None
    ) -> bool:
        return await self._post("/v1/storage/volume/snapshot", volume, snapshot_uuid, vm_uuid)

    async def delete_snapshot(
        self, volume: Mapping[str, Any], snapshot_uuid: str, vm_uuid: str | None
    ) -> bool:
        try:
            return await self._post(
                "/v1/storage/volume/snapshot/delete", volume, snapshot_uuid, vm_uuid
            )
        except OperationFailed as exc:
            if exc.code == "KVM.VOLUME_NOT_MADE":  # no file, no snapshot in it
                return False
            raise

    async def revert_snapshot(
        self, volume: Mapping[str, Any], snapshot_uuid: str, vm_uuid: str | None
    ) -> bool:
        return await self._post(
            "/v1/storage/volume/snapshot/revert", volume, snapshot_uuid, vm_uuid
        )

    async def resize_volume(
        self, volume: Mapping[str, Any], size: int, vm_uuid: str | None
    ) -> bool:
        """``VolumeResizeStorage``: ``qemu-img resize`` of a file no running domain holds; a
        volume not made on any host yet is made at its new size when first used."""
        try:
            host = await self._holder(volume)
        except OperationFailed as exc:
            if exc.code == "KVM.VOLUME_NOT_MADE":
                return True
            raise
        if host is None:
            return False
        body: dict[str, Any] = {"path": volume["installPath"], "size": size}
        if vm_uuid:
            body["vmUuid"] = vm_uuid
        await self.ht.client(host, self.ht.record(host.uuid)).post(
            "/v1/storage/volume/resize", body
        )
        return True


async def sync_after_ping(ht: KvmHostType, host: HostRef) -> None:
    """Keep local and shared storage current: the pinged host's directories, reported again."""
    if "SyncLocalStorage" in ht.node.apis.apis:
        await _internal(ht, "SyncLocalStorage", hostUuid=host.uuid)
    if "SyncSharedStorage" in ht.node.apis.apis:  # and whether it still sees shared storage
        await _internal(ht, "SyncSharedStorage", hostUuid=host.uuid)


# ----------------------------------------------------------------------------- volumes


def volume_roots(
    ht: KvmHostType, volumes: Sequence[Mapping[str, Any]], conn: Reader | None = None
) -> dict[str, tuple[str, str]]:
    """:func:`storage_roots` of the volumes' primary storages."""
    return storage_roots(ht, {str(v.get("primaryStorageUuid")) for v in volumes}, conn)


async def prepare_volumes(
    ht: KvmHostType,
    host: HostRef,
    client: AgentClient,
    volumes: Sequence[Mapping[str, Any]],
    roots: Mapping[str, tuple[str, str]] | None = None,
    *,
    creates: AgentBatch | None = None,
) -> None:
    """Make the VM's volumes exist on ``host`` (see the module docstring); ``roots``: their
    :func:`volume_roots` when the caller has read them; ``creates``: where the commands that
    make the files go when not straight to ``client`` (a VM start sends them with its start)."""
    roots = volume_roots(ht, volumes) if roots is None else roots
    for vol in volumes:
        path = str(vol.get("installPath") or "")
        kind, root = roots.get(str(vol.get("primaryStorageUuid")), ("", ""))
        if root and path:
            await ensure_volume(ht, host, client, vol, root, shared=kind in SHARED, creates=creates)
        elif path.startswith("/"):  # storage the node keeps no layout of: an empty file
            body = {"path": path, "size": int(vol.get("size") or 0), "format": _format(vol)}
            await (creates or client).post("/v1/storage/volume/create", body)


def _format(vol: Mapping[str, Any]) -> str:
    return str(vol.get("format") or "qcow2")


async def ensure_volume(
    ht: KvmHostType,
    host: HostRef,
    client: AgentClient,
    vol: Mapping[str, Any],
    root: str,
    *,
    shared: bool = False,
    creates: AgentBatch | None = None,
) -> dict[str, Any]:
    """Make the volume's file (and its image in the cache) when missing. On local storage the
    volume is placed on ``host`` first; on shared storage ``host`` must see the directory.
    ``creates``: where the command making the file goes (queued there: the answer is ``{}``)."""
    if shared:
        await shared_host(ht, str(vol["primaryStorageUuid"]), host.uuid)
        placed = {"hostUuid": host.uuid}
    else:
        placed = await _internal(
            ht,
            "PlaceLocalVolume",
            volumeUuid=str(vol["uuid"]),
            primaryStorageUuid=str(vol["primaryStorageUuid"]),
            hostUuid=host.uuid,
        )
    if placed["hostUuid"] != host.uuid:
        raise OperationFailed(
            f"volume {vol.get('name')} ({vol['uuid']}) is on the local storage of host"
            f" {placed['hostUuid']}; it can be used only there (local storage has no storage"
            " migration yet)",
            code="KVM.VOLUME_ON_OTHER_HOST",
            volumeUuid=vol["uuid"],
            hostUuid=placed["hostUuid"],
        )
    body: dict[str, Any] = {
        "path": vol["installPath"],
        "size": int(vol.get("size") or 0),
        "format": _format(vol),
    }
    image_uuid = vol.get("rootImageUuid") if vol.get("type") == "Root" else None
    image = _image(ht, str(image_uuid)) if image_uuid else None
    if image is not None and image.get("mediaType") != "ISO":
        if image.get("format") != "qcow2" or body["format"] != "qcow2":
            raise OperationFailed(
                f"image {image['name']} is {image.get('format')}; root volumes on local storage"
                " are qcow2 overlays of qcow2 images",
                code="KVM.UNSUPPORTED_IMAGE_FORMAT",
            )
        cache = await ensure_cached(ht, host, client, image, root, made=shared)
        body.update(backingFile=cache, backingFormat="qcow2")
    return await (creates or client).post("/v1/storage/volume/create", body)


async def ensure_cached(
    ht: KvmHostType,
    host: HostRef,
    client: AgentClient,
    image: Mapping[str, Any],
    root: str,
    *,
    made: bool = False,
) -> str:
    """The qcow2 image in the host's cache under ``root`` (fetched when missing); its path.
    ``made``: ``root/cache`` exists already (the shared check made it)."""
    cache = posixpath.join(root, "cache", f"{image['uuid']}.qcow2")
    if not made:
        await client.post("/v1/storage/capacity", {"path": root})
    if not (await client.post("/v1/storage/stat", {"path": cache}))["exists"]:
        await fetch_image(ht, host, image, cache)
    return cache


async def fetch_image(ht: KvmHostType, host: HostRef, image: Mapping[str, Any], dest: str) -> None:
    """Copy the image from an image store into the host's cache at ``dest``."""
    bs_rt = ht.node.resources.get("BackupStorage")
    source = None
    with ht.node.db.tx() as s:
        for ref in image.get("backupStorageRefs") or []:
            bs = s.get(bs_rt.model, ref["backupStorageUuid"])
            if bs is not None and bs.type == IMAGE_STORE and ref.get("status") == "Ready":
                source = (bs.uuid, str(ref["installPath"]))
                break
    if source is None:
        raise OperationFailed(
            f"image {image['name']} has no Ready copy on an image store backup storage, so"
            f" host {host.name} cannot fetch it",
            code="KVM.IMAGE_NOT_FETCHABLE",
            imageUuid=image["uuid"],
        )
    src, access, row = await store_and_host(ht, host, source[0])
    await asyncio.to_thread(
        _copy,
        src,
        str(access["hostKey"]),
        source[1],
        ht.ssh_target(host, row),
        row.hostKey,
        dest,
        str(image.get("checksum") or ""),
    )


async def store_and_host(
    ht: KvmHostType, host: HostRef, bs_uuid: str
) -> tuple[ssh.SshTarget, dict[str, Any], Any]:
    """The image store's SSH target and access (credentials, pinned key), and the host's
    record (its pinned key), for a copy between the two through the node."""
    access = await _internal(ht, "GetImageStoreAccess", backupStorageUuid=bs_uuid)
    row = ht.record(host.uuid)
    if row.hostKey is None:
        raise OperationFailed(f"host {host.name} has no pinned SSH key", code="KVM.NO_RECORD")
    store = ssh.SshTarget(
        str(access["hostname"]),
        int(access["sshPort"]),
        str(access["username"]),
        access.get("password"),
        access.get("sshPrivateKey"),
    )
    return store, access, row


def _sftp_makedirs(sftp: Any, path: str) -> None:
    missing = []
    while path not in ("", "/"):
        try:
            sftp.stat(path)
            break
        except OSError:
            missing.append(path)
            path = posixpath.dirname(path)
    for p in reversed(missing):
        sftp.mkdir(p, 0o755)


def _copy(
    src: ssh.SshTarget,
    src_key: str,
    src_path: str,
    dst: ssh.SshTarget,
    dst_key: str,
    dst_path: str,
    checksum: str,
    tmp: str | None = None,
) -> tuple[str, int]:
    """SFTP to SFTP through the node, verified, then renamed into place (blocking);
    the copy's ``sha256:<hex>`` and byte count. ``tmp``: the partial file's name (default:
    a random ``.part-`` name next to ``dst_path``), whose directory is made when missing."""
    a = ssh.open_connection(src, src_key)
    try:
        b = ssh.open_connection(dst, dst_key)
        try:
            sa, sb = a.sftp(), b.sftp()
            tmp = tmp or f"{dst_path}.part-{secrets.token_hex(4)}"
            _sftp_makedirs(sb, posixpath.dirname(tmp))
            digest = hashlib.sha256()
            count = 0
            try:
                with sa.open(src_path, "rb") as fin, sb.open(tmp, "wb") as fout:
                    fin.prefetch()
                    fout.set_pipelined(True)
                    while block := fin.read(CHUNK):
                        fout.write(block)
                        digest.update(block)
                        count += len(block)
                got = "sha256:" + digest.hexdigest()
                if checksum and got != checksum:
                    raise OperationFailed(
                        f"image copy to {dst.host} is corrupt: {got}, expected {checksum}",
                        code="KVM.IMAGE_CHECKSUM",
                    )
                sb.posix_rename(tmp, dst_path)
                return got, count
            except BaseException:
                try:
                    sb.remove(tmp)
                except OSError:
                    pass
                raise
        finally:
            b.close()
    finally:
        a.close()


# ----------------------------------------------------------------------------- VM operations


def check_migratable(ht: KvmHostType, vm: Mapping[str, Any]) -> None:
    """A VM with volumes on local storage stays on its host (no storage copy yet)."""
    on_local = local_storages(
        ht, {str(v.get("primaryStorageUuid")) for v in vm.get("allVolumes") or []}
    )
    if on_local:
        raise OperationFailed(
            f"VM {vm.get('name')} has volumes on local primary storage"
            f" ({', '.join(sorted(on_local))}), which only its host reaches: live migration"
            " needs shared primary storage; use LocalStorageMigrateVolume on a stopped VM",
            code="KVM.MIGRATE_LOCAL_STORAGE",
        )


STORAGE_OPS = ("attachVolume", "detachVolume", "takeSnapshot", "resizeVolume")


def disk_of(vol: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": vol["installPath"],
        "format": _format(vol),
        "deviceId": int(vol.get("deviceId") or 0),
        "serial": str(vol["uuid"])[:20],
    }


async def vm_storage_op(
    ht: KvmHostType,
    host: HostRef,
    client: AgentClient,
    op: str,
    vm: Mapping[str, Any],
    args: Mapping[str, Any],
) -> dict[str, Any]:
    uuid = str(vm["uuid"])
    vol = dict(args.get("volume") or {})
    if not vol.get("installPath"):
        raise InvalidArgument(f"{op}: the volume has no install path", field="volume")
    if op == "attachVolume":
        await prepare_volumes(ht, host, client, [vol])
        await client.post("/v1/vm/attach-disk", {"uuid": uuid, "disk": disk_of(vol)})
        return {"state": vm.get("state")}
    if op == "detachVolume":
        await client.post("/v1/vm/detach-disk", {"uuid": uuid, "disk": disk_of(vol)})
        return {"state": vm.get("state")}
    if op == "resizeVolume":  # the running domain's disk: blockResize, the guest sees it
        target = "vd" + chr(ord("a") + int(vol.get("deviceId") or 0))
        body = {"path": vol["installPath"], "size": int(args["size"]), "vmUuid": uuid,
                "target": target}  # fmt: skip
        done = await client.post("/v1/storage/volume/resize", body)
        return {"state": vm.get("state"), "resized": done}
    # takeSnapshot: an internal qcow2 snapshot named after the snapshot
    if not storage_roots(ht, {str(vol.get("primaryStorageUuid"))}):
        raise OperationFailed(
            "volume snapshots on KVM hosts need local or shared primary storage",
            code="KVM.UNSUPPORTED_OPERATION",
            operation=op,
        )
    done = await client.post(
        "/v1/storage/volume/snapshot",
        {"path": vol["installPath"], "name": str(args["snapshotUuid"]), "vmUuid": uuid},
    )
    return {"state": vm.get("state"), "snapshot": done}
