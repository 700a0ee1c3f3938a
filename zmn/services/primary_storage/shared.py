"""Shared primary storage: one directory every host of the attached clusters sees.

Two types, one mechanism:

* ``SharedMountPoint`` (ZStack's name): ``url`` is a directory the operator has mounted on
  every host from any shared file system; volumes live under it (``mountPath == url``).
* ``NFS``: ``url`` is ``HOST:/export``; each host's agent mounts it at
  ``/var/lib/zagent/nfs/<uuid>`` (the ``mountPath``, the same on every host) with the options
  of ``nfsPrimaryStorage/mount.options``, under ``nfsPrimaryStorage/mount.timeout``; from there
  on it is a shared mount point.

The layout under the directory is the local storage's (``cache/``, ``volumes/``: the same
``installPath`` opens the same file on every host) plus a marker file ``zstack_smp_id`` with
the storage UUID and a nonce the node made at add time. On attach, on every (re)connect of a
host and on pings (``SyncSharedStorage``) each host's agent reads the marker; the first host
of a new storage writes it. A host that sees no marker or another one is ``Disconnected`` for
that storage (``shared_storage_host_ref`` keeps the reason) and no volume of it is made or
started there. The storage is ``Connected`` when at least one host is.

Capacity is the shared file system's ``statvfs`` as any Connected host reports it (one file
system, counted once), applied like local storage's (bytes given to volumes stay taken).
A deleted volume's file goes through any Connected host (the service's one dispatch by storage
type sends it here).
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select

from zmn.api.errors import InvalidArgument, OperationFailed
from zmn.core import crud
from zmn.core.db import new_uuid
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.service import Call, handler
from zmn.services.primary_storage.api import (
    AddNfsPrimaryStorage,
    AddSharedMountPointPrimaryStorage,
    GetSharedStorageHost,
    SyncSharedStorage,
)
from zmn.services.primary_storage.local import PROBE_TIMEOUT, check_url, set_total
from zmn.services.primary_storage.models import (
    PrimaryStorageClusterRefVO,
    PrimaryStorageVO,
    SharedStorageHostRefVO,
    SharedStorageMarkerVO,
)

if TYPE_CHECKING:
    from zmn.core.bus import Event
    from zmn.core.fastsql import AnyConnection
    from zmn.core.node import Node
    from zmn.services.primary_storage.local import LocalStorageBackend

log = logging.getLogger("zmn.storage.shared")

SMP = "SharedMountPoint"
NFS = "NFS"
SHARED = (SMP, NFS)
NFS_ROOT = "/var/lib/zagent/nfs"
NFS_URL = re.compile(r"^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):/[^\s,]*$")

GLOBAL_CONFIGS = [
    GlobalConfigDef(
        "nfsPrimaryStorage",
        "mount.options",
        "vers=4.1,soft,timeo=100,retrans=3",
        "string",
        "options of mount -t nfs on each host for NFS primary storage (comma-separated)",
        validator=lambda v: (
            None
            if re.fullmatch(r"[A-Za-z0-9_=.,:\-]*", str(v))
            else "must be comma-separated mount options without spaces"
        ),
    ),
    GlobalConfigDef(
        "nfsPrimaryStorage",
        "mount.timeout",
        60,
        "int",
        "seconds a host waits for the NFS server to mount an export before it gives up",
        min=1,
        max=3600,
    ),
]


def host_refs(session: Any, ps_uuid: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(SharedStorageHostRefVO)
        .where(SharedStorageHostRefVO.primaryStorageUuid == ps_uuid)
        .order_by(SharedStorageHostRefVO.hostUuid)
    )
    return [{"hostUuid": r.hostUuid, "status": r.status, "reason": r.reason} for r in rows]


_REF = SharedStorageHostRefVO
_NOT_CONNECTED = select(_REF.hostUuid, _REF.primaryStorageUuid, _REF.reason).where(
    _REF.primaryStorageUuid.in_(bindparam("ps", expanding=True)), _REF.status != "Connected"
)


class SharedStorageAccess:
    """The host allocator's rule for shared storage (a ``HostStorageAccess``): a host whose
    last check of a storage's marker failed (its ref is not Connected) cannot use it. A host
    never checked yet is not ruled out: using it checks first (``GetSharedStorageHost``)."""

    def hosts_without(self, conn: AnyConnection, ps_uuids: list[str]) -> dict[str, str]:
        return {
            r.hostUuid: f"primary storage {r.primaryStorageUuid}: {r.reason or 'not seen'}"
            for r in conn.execute(_NOT_CONNECTED, {"ps": list(ps_uuids)})
        }


class SharedStorageHandlers:
    node: Node

    if TYPE_CHECKING:  # from LocalStorageHandlers (the same service)

        def _backend(self, hypervisor_type: str) -> LocalStorageBackend | None: ...
        def _pairs(
            self, host_uuid: str | None, ps_uuid: str | None, types: tuple[str, ...] = ...
        ) -> list[tuple[str, str, Any]]: ...
        def _host_model(self) -> Any: ...

    # ----------------------------------------------------------------- APIs

    async def _add_shared(
        self, call: Call, msg: Any, kind: str, url: str, path: str | None
    ) -> dict[str, Any]:
        """The storage row and its marker identity, in one transaction."""
        rt = self.node.resources.get("PrimaryStorage")
        uuid = msg.resourceUuid or new_uuid()
        row = PrimaryStorageVO(
            uuid=uuid,
            name=msg.name,
            zoneUuid=msg.zoneUuid,
            type=kind,
            url=url,
            mountPath=path or posixpath.join(NFS_ROOT, uuid),  # NFS: the same on every host
            state="Enabled",
            status="Connecting",  # Connected once a host has seen it
            totalCapacity=0,
            availableCapacity=0,
            totalPhysicalCapacity=0,
            availablePhysicalCapacity=0,
        )

        def check(s: Any) -> None:
            crud.unique_name(s, rt, msg.name)
            s.add(SharedStorageMarkerVO(primaryStorageUuid=uuid, nonce=secrets.token_hex(16)))

        return await crud.create(call, "PrimaryStorage", row, msg, check=check)

    @handler(AddSharedMountPointPrimaryStorage)
    async def add_smp_primary_storage(
        self, msg: AddSharedMountPointPrimaryStorage, call: Call
    ) -> dict[str, Any]:
        path = check_url(msg.url)
        return dict(await self._add_shared(call, msg, SMP, path, path))

    @handler(AddNfsPrimaryStorage)
    async def add_nfs_primary_storage(
        self, msg: AddNfsPrimaryStorage, call: Call
    ) -> dict[str, Any]:
        url = msg.url.strip()
        if url.startswith("nfs://"):
            url = url[len("nfs://") :]
        if not NFS_URL.match(url) or ".." in url.split(":", 1)[-1].split("/"):
            raise InvalidArgument(
                f"url: {msg.url!r} must be the NFS export as HOST:/path (e.g."
                " 192.168.0.5:/exports/zstack)",
                field="url",
            )
        return dict(await self._add_shared(call, msg, NFS, url, None))

    @handler(SyncSharedStorage)
    async def sync_shared_storage(self, msg: SyncSharedStorage, call: Call) -> dict[str, Any]:
        await self.sync_shared(msg.hostUuid, msg.primaryStorageUuid)
        return {}

    @handler(GetSharedStorageHost)
    async def get_shared_storage_host(
        self, msg: GetSharedStorageHost, call: Call
    ) -> dict[str, Any]:
        if msg.hostUuid:
            ref = self._ref(msg.primaryStorageUuid, msg.hostUuid)
            if ref is None:  # never checked from there (e.g. a host added a moment ago)
                await self.sync_shared(msg.hostUuid, msg.primaryStorageUuid)
                ref = self._ref(msg.primaryStorageUuid, msg.hostUuid)
            if ref is None or ref[0] != "Connected":
                reason = (
                    ref[1] if ref else "the host is not in a cluster the storage is attached to"
                )
                raise OperationFailed(
                    f"primary storage {msg.primaryStorageUuid} is not usable from host"
                    f" {msg.hostUuid}: {reason}",
                    code="PRIMARY_STORAGE.HOST_NOT_CONNECTED",
                    primaryStorageUuid=msg.primaryStorageUuid,
                    hostUuid=msg.hostUuid,
                )
            return {"hostUuid": msg.hostUuid}
        host = self._host_model()
        with self.node.db.tx() as s:
            ref_ = SharedStorageHostRefVO
            found = s.scalar(
                select(ref_.hostUuid)
                .join(host, host.uuid == ref_.hostUuid)
                .where(
                    ref_.primaryStorageUuid == msg.primaryStorageUuid,
                    ref_.status == "Connected",
                    host.status == "Connected",
                )
                .order_by(host.name)
                .limit(1)
            )
        if found is None:
            raise OperationFailed(
                f"no connected host sees primary storage {msg.primaryStorageUuid}; reconnect a"
                " host of a cluster it is attached to",
                code="PRIMARY_STORAGE.HOST_NOT_CONNECTED",
                primaryStorageUuid=msg.primaryStorageUuid,
            )
        return {"hostUuid": str(found)}

    def _ref(self, ps_uuid: str, host_uuid: str) -> tuple[str, str | None] | None:
        with self.node.db.tx() as s:
            ref = s.get(SharedStorageHostRefVO, (ps_uuid, host_uuid))
            return None if ref is None else (ref.status, ref.reason)

    # ----------------------------------------------------------------- the check

    async def sync_shared(self, host_uuid: str | None = None, ps_uuid: str | None = None) -> None:
        pairs = self._pairs(host_uuid, ps_uuid, SHARED)
        by_ps: dict[str, list[tuple[str, Any]]] = {}
        for ps, path, h in pairs:
            by_ps.setdefault(ps, []).append((path, h))
        scope = {ps_uuid} if ps_uuid else set(by_ps)
        await asyncio.gather(*(self._sync_one(ps, by_ps.get(ps, [])) for ps in scope))

    async def _probe(self, row: dict[str, Any], path: str, h: Any, write: bool) -> dict[str, Any]:
        backend = self._backend(str(h.hypervisorType))
        if backend is None:
            return {"status": "Disconnected", "reason": "its hypervisor cannot use this storage"}
        try:
            if row["type"] == NFS:
                cfg = self.node.global_config
                timeout = int(cfg.get("nfsPrimaryStorage", "mount.timeout"))
                await asyncio.wait_for(
                    backend.nfs_mount(
                        h.uuid,
                        row["url"],
                        path,
                        str(cfg.get("nfsPrimaryStorage", "mount.options")),
                        timeout,
                    ),
                    timeout + PROBE_TIMEOUT,
                )
            return await asyncio.wait_for(
                backend.shared_check(h.uuid, path, row["uuid"], row["nonce"], write),
                PROBE_TIMEOUT,
            )
        except Exception as exc:
            return {"status": "Disconnected", "reason": f"the host's agent failed: {exc}"}

    async def _sync_one(self, ps_uuid: str, hosts: list[tuple[str, Any]]) -> None:
        with self.node.db.tx() as s:
            ps = s.get(PrimaryStorageVO, ps_uuid)
            marker = s.get(SharedStorageMarkerVO, ps_uuid)
            if ps is None or marker is None:
                return
            row = {"uuid": ps.uuid, "type": ps.type, "url": ps.url, "nonce": marker.nonce}
            written = bool(marker.written)
        results = list(await asyncio.gather(*(self._probe(row, p, h, False) for p, h in hosts)))
        if not written and not any(r.get("marker") in ("ok", "other") for r in results):
            first = next((i for i, r in enumerate(results) if r.get("marker") == "missing"), None)
            if first is not None:  # a new storage: its first host writes the marker
                path, h = hosts[first]
                results[first] = await self._probe(row, path, h, True)
                if results[first].get("status") == "Connected":
                    with self.node.db.tx() as s:
                        m = s.get(SharedStorageMarkerVO, ps_uuid)
                        if m is not None:
                            m.written = True
                    again = [i for i, r in enumerate(results) if r.get("marker") == "missing"]
                    redo = await asyncio.gather(
                        *(self._probe(row, *hosts[i], False) for i in again)
                    )
                    for i, r in zip(again, redo, strict=True):
                        results[i] = r
        self._record(ps_uuid, hosts, results)

    def _record(
        self, ps_uuid: str, hosts: list[tuple[str, Any]], results: list[dict[str, Any]]
    ) -> None:
        host = self._host_model()
        cref = PrimaryStorageClusterRefVO
        with self.node.db.tx() as s:
            present = (
                select(host.uuid)
                .join(cref, cref.clusterUuid == host.clusterUuid)
                .where(cref.primaryStorageUuid == ps_uuid)
            )
            s.execute(
                delete(SharedStorageHostRefVO)
                .where(
                    SharedStorageHostRefVO.primaryStorageUuid == ps_uuid,
                    SharedStorageHostRefVO.hostUuid.not_in(present),
                )
                .execution_options(synchronize_session=False)
            )
            capacity = None
            for (_path, h), res in zip(hosts, results, strict=True):
                ref = s.get(SharedStorageHostRefVO, (ps_uuid, h.uuid))
                if ref is None:
                    ref = SharedStorageHostRefVO(primaryStorageUuid=ps_uuid, hostUuid=h.uuid)
                    s.add(ref)
                status = str(res.get("status") or "Disconnected")
                reason = None if status == "Connected" else str(res.get("reason") or "unknown")
                if (ref.status, ref.reason) != (status, reason) and status != "Connected":
                    log.warning("host %s does not see storage %s: %s", h.name, ps_uuid, reason)
                ref.status, ref.reason = status, reason
                if status == "Connected" and capacity is None:
                    capacity = (int(res["totalCapacity"]), int(res["availableCapacity"]))
            s.flush()
            connected = s.scalar(
                select(SharedStorageHostRefVO.hostUuid)
                .where(
                    SharedStorageHostRefVO.primaryStorageUuid == ps_uuid,
                    SharedStorageHostRefVO.status == "Connected",
                )
                .limit(1)
            )
            ps = s.get(PrimaryStorageVO, ps_uuid)
            if ps is not None:
                ps.status = "Connected" if connected is not None else "Disconnected"
            if capacity is not None:
                set_total(s, ps_uuid, *capacity)

    # ----------------------------------------------------------------- events

    def subscribe_shared(self) -> list[Any]:
        bus = self.node.bus
        return [
            bus.subscribe("/host/vm/states", self._on_host_connected_shared),
            bus.subscribe("/primary-storage/deleted", self._on_storage_deleted),
        ]

    async def _on_storage_deleted(self, event: Event) -> None:
        """A deleted storage's marker identity and host views go with it."""
        uuid = str((event.data.get("inventory") or {}).get("uuid") or "")
        if not uuid:
            return
        with self.node.db.tx() as s:
            for model in (SharedStorageHostRefVO, SharedStorageMarkerVO):
                s.execute(
                    delete(model)
                    .where(model.primaryStorageUuid == uuid)
                    .execution_options(synchronize_session=False)
                )

    async def _on_host_connected_shared(self, event: Event) -> None:
        host = str(event.data.get("hostUuid") or "")
        if host:
            await self.sync_shared(host_uuid=host)

    async def unmount_nfs(self, ps_uuid: str, cluster_uuid: str) -> None:
        """An NFS storage detached from a cluster: its hosts unmount the export (best effort:
        a host that cannot, e.g. a volume still in use there, is logged and keeps it)."""
        host = self._host_model()
        with self.node.db.tx() as s:
            ps = s.get(PrimaryStorageVO, ps_uuid)
            if ps is None or ps.type != NFS or host is None:
                return
            path = str(ps.mountPath)
            hosts = [
                (str(h.uuid), str(h.name), str(h.hypervisorType))
                for h in s.scalars(select(host).where(host.clusterUuid == cluster_uuid))
            ]

        async def unmount(uuid: str, name: str, hv: str) -> None:
            backend = self._backend(hv)
            if backend is None:
                return
            try:
                await backend.nfs_umount(uuid, path)
            except Exception as exc:
                log.warning("host %s: could not unmount %s (%s): %s", name, path, ps_uuid, exc)

        await asyncio.gather(*(unmount(*h) for h in hosts))

    async def delete_shared_file(self, vol: dict[str, Any], ps_uuid: str, root: str) -> None:
        """The volume's file goes from its shared storage ``ps_uuid`` (hosts see it at
        ``root``), through a Connected host (best effort: logged)."""
        path = str(vol.get("installPath") or "")
        if not path:
            return
        try:
            got = await self.get_shared_storage_host(
                GetSharedStorageHost(primaryStorageUuid=ps_uuid),
                Call(self.node, self.node.admin_principal(), "GetSharedStorageHost"),
            )
            host_uuid = got["hostUuid"]
            model = self._host_model()
            with self.node.db.tx() as s:
                h = s.get(model, host_uuid)
                hv = "" if h is None else str(h.hypervisorType)
            backend = self._backend(hv)
            if backend is not None:
                await backend.delete_volume(host_uuid, root, path)
        except Exception as exc:
            log.warning("volume %s: could not delete %s: %s", vol.get("uuid"), path, exc)
