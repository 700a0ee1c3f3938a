"""Local primary storage: a directory on every host of the clusters it is attached to.

The node never touches the hosts itself: a hypervisor plugin (KVM) registers a
:class:`LocalStorageBackend` extension that asks a host's agent for a directory's capacity
(``statvfs``) and deletes volume files. Here:

* capacity: each host's report is kept in ``local_storage_host_ref``; the storage's total is
  the sum over the hosts of its attached clusters (physical free likewise). A change of total
  moves ``availableCapacity`` by the same amount, in one ``UPDATE``, so bytes taken by volumes
  stay taken. Reports come at attach, after every (re)connect of a host (the host type's
  ``/host/vm/states`` event) and on pings (``SyncLocalStorage`` from the host type).
* placement: a volume lives on the host that made it (``local_storage_volume_ref``); it
  cannot be used from another host (no storage migration yet).
* deletion: a deleted volume's file goes (the service's one dispatch by storage type), on the
  host holding it. Best effort: an unreachable host keeps the file (logged).
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import delete, func, select, update

from zmn.api.errors import InvalidArgument
from zmn.core import crud
from zmn.core.service import Call, handler
from zmn.services.primary_storage.api import (
    AddLocalPrimaryStorage,
    PlaceLocalVolume,
    SyncLocalStorage,
)
from zmn.services.primary_storage.models import (
    LocalStorageHostRefVO,
    LocalStorageVolumeRefVO,
    PrimaryStorageClusterRefVO,
    PrimaryStorageVO,
)

if TYPE_CHECKING:
    from zmn.core.bus import Event
    from zmn.core.node import Node

log = logging.getLogger("zmn.storage.local")

LOCAL = "LocalStorage"
PROBE_TIMEOUT = 15.0


@runtime_checkable
class LocalStorageBackend(Protocol):
    """How a hypervisor plugin reaches a host's local storage directory."""

    hypervisor_type: str

    async def storage_capacity(self, host_uuid: str, path: str) -> tuple[int, int]:
        """Make ``path`` on the host; its (total, free) bytes."""

    async def delete_volume(self, host_uuid: str, root: str, path: str) -> None:
        """Delete the volume file ``path`` (inside ``root``) on the host."""

    async def volume_stat(self, host_uuid: str, path: str) -> dict[str, Any]:
        """Whether the file exists on the host (``exists``) and its ``actualSize``."""

    async def copy_volume(
        self, src_uuid: str, dst_uuid: str, root: str, path: str, tmp: str, image_uuid: str | None
    ) -> None:
        """Copy the volume file ``path`` (inside ``root``) from one host to the same path on
        another, through the partial file ``tmp``; ``image_uuid``: its backing image."""

    async def shared_check(
        self, host_uuid: str, path: str, ps_uuid: str, nonce: str, write: bool
    ) -> dict[str, Any]:
        """What the host sees at a shared storage's ``path``: ``status``, ``reason``,
        ``marker`` and, when Connected, ``totalCapacity``/``availableCapacity``."""

    async def nfs_mount(
        self, host_uuid: str, url: str, path: str, options: str, timeout: int
    ) -> None:
        """Mount the NFS export ``url`` at ``path`` on the host (a no-op when it is)."""

    async def nfs_umount(self, host_uuid: str, path: str) -> None:
        """Unmount what is mounted at ``path`` on the host (a no-op when nothing is)."""


def check_url(url: str) -> str:
    path = url.strip()
    if path.startswith("file://"):
        path = path[len("file://") :]
    norm = posixpath.normpath(path)
    if not path.startswith("/") or norm == "/" or ".." in path.split("/") or "\n" in path:
        raise InvalidArgument(
            f"url: {url!r} must be an absolute directory other than / (e.g. /var/lib/zstack/local)",
            field="url",
        )
    return norm


def set_total(s: Any, ps_uuid: str, total: int, free: int) -> None:
    """A storage's total capacity as measured: ``availableCapacity`` moves by the change of
    total, in one ``UPDATE``, so bytes taken by volumes stay taken."""
    ps = PrimaryStorageVO
    # available first: MariaDB evaluates SET left to right with the new values
    s.execute(
        update(ps)
        .where(ps.uuid == ps_uuid)
        .ordered_values(
            (ps.availableCapacity, ps.availableCapacity + (total - ps.totalCapacity)),
            (ps.totalCapacity, total),
            (ps.totalPhysicalCapacity, total),
            (ps.availablePhysicalCapacity, free),
        )
        .execution_options(synchronize_session=False)
    )


class LocalStorageHandlers:
    node: Node

    # ----------------------------------------------------------------- plumbing

    def _backend(self, hypervisor_type: str) -> LocalStorageBackend | None:
        return self.node.extensions.first(LocalStorageBackend, hypervisor_type=hypervisor_type)  # type: ignore[type-abstract]

    def _host_model(self) -> Any:
        rt = self.node.resources.types.get("Host")
        return None if rt is None else rt.model

    def _pairs(
        self, host_uuid: str | None, ps_uuid: str | None, types: tuple[str, ...] = (LOCAL,)
    ) -> list[tuple[str, str, Any]]:
        """(storage, directory, host row) for storages of ``types`` and the connected hosts
        of their clusters (the directory is where hosts see it: ``mountPath``)."""
        host = self._host_model()
        if host is None:
            return []
        ps, ref = PrimaryStorageVO, PrimaryStorageClusterRefVO
        stmt = (
            select(ps.uuid, func.coalesce(ps.mountPath, ps.url), host)
            .join(ref, ref.primaryStorageUuid == ps.uuid)
            .join(host, host.clusterUuid == ref.clusterUuid)
            .where(ps.type.in_(types), host.status != "Disconnected")
            .order_by(ps.uuid, host.name, host.uuid)
        )
        if host_uuid:
            stmt = stmt.where(host.uuid == host_uuid)
        if ps_uuid:
            stmt = stmt.where(ps.uuid == ps_uuid)
        with self.node.db.tx() as s:
            rows = [(str(a), str(b), h) for a, b, h in s.execute(stmt)]
            for _a, _b, h in rows:
                s.expunge(h)
        return rows

    async def sync_local(self, host_uuid: str | None = None, ps_uuid: str | None = None) -> None:
        pairs = self._pairs(host_uuid, ps_uuid)

        async def probe(ps_uuid: str, url: str, h: Any) -> tuple[str, str, int, int] | None:
            backend = self._backend(str(h.hypervisorType))
            if backend is None:
                return None
            try:
                total, free = await asyncio.wait_for(
                    backend.storage_capacity(h.uuid, url), PROBE_TIMEOUT
                )
            except Exception as exc:
                log.warning("host %s: capacity of local storage %s unknown: %s", h.name, url, exc)
                return None
            return ps_uuid, h.uuid, total, free

        reports = await asyncio.gather(*(probe(*p) for p in pairs))
        touched = {p[0] for p in pairs}
        with self.node.db.tx() as s:
            for rep in reports:
                if rep is None:
                    continue
                ps, host, total, free = rep
                row = s.get(LocalStorageHostRefVO, (ps, host))
                if row is None:
                    row = LocalStorageHostRefVO(primaryStorageUuid=ps, hostUuid=host)
                    s.add(row)
                row.totalCapacity, row.availablePhysicalCapacity = total, free
        for ps in touched:
            self._recompute(ps)

    def _recompute(self, ps_uuid: str) -> None:
        """The storage's capacity from its hosts' reports (hosts gone from it are dropped)."""
        host = self._host_model()
        ref, cref = LocalStorageHostRefVO, PrimaryStorageClusterRefVO
        with self.node.db.tx() as s:
            present = (
                select(host.uuid)
                .join(cref, cref.clusterUuid == host.clusterUuid)
                .where(cref.primaryStorageUuid == ps_uuid)
            )
            s.execute(
                delete(ref)
                .where(ref.primaryStorageUuid == ps_uuid, ref.hostUuid.not_in(present))
                .execution_options(synchronize_session=False)
            )
            total, free = s.execute(
                select(
                    func.coalesce(func.sum(ref.totalCapacity), 0),
                    func.coalesce(func.sum(ref.availablePhysicalCapacity), 0),
                ).where(ref.primaryStorageUuid == ps_uuid)
            ).one()
            set_total(s, ps_uuid, int(total), int(free))

    # ----------------------------------------------------------------- APIs

    @handler(AddLocalPrimaryStorage)
    async def add_local_primary_storage(
        self, msg: AddLocalPrimaryStorage, call: Call
    ) -> dict[str, Any]:
        path = check_url(msg.url)
        rt = self.node.resources.get("PrimaryStorage")
        row = PrimaryStorageVO(
            name=msg.name,
            zoneUuid=msg.zoneUuid,
            type=LOCAL,
            url=path,
            mountPath=path,
            state="Enabled",
            status="Connected",
            totalCapacity=0,
            availableCapacity=0,
            totalPhysicalCapacity=0,
            availablePhysicalCapacity=0,
        )
        return await crud.create(
            call, "PrimaryStorage", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(SyncLocalStorage)
    async def sync_local_storage(self, msg: SyncLocalStorage, call: Call) -> dict[str, Any]:
        await self.sync_local(msg.hostUuid, msg.primaryStorageUuid)
        return {}

    @handler(PlaceLocalVolume)
    async def place_local_volume(self, msg: PlaceLocalVolume, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            row = s.get(LocalStorageVolumeRefVO, msg.volumeUuid)
            if row is None:
                row = LocalStorageVolumeRefVO(
                    volumeUuid=msg.volumeUuid,
                    primaryStorageUuid=msg.primaryStorageUuid,
                    hostUuid=msg.hostUuid,
                )
                s.add(row)
            return {"hostUuid": row.hostUuid, "new": row.hostUuid == msg.hostUuid}

    # ----------------------------------------------------------------- events

    def subscribe_local(self) -> list[Any]:
        bus = self.node.bus
        return [
            bus.subscribe("/host/vm/states", self._on_host_connected),
        ]

    async def _on_host_connected(self, event: Event) -> None:
        host = str(event.data.get("hostUuid") or "")
        if host:
            await self.sync_local(host_uuid=host)

    async def delete_local_file(self, vol: dict[str, Any]) -> None:
        """The volume's file goes from the host holding it, with the volume's place (nothing
        to do for a volume with no ``local_storage_volume_ref``: not on local storage)."""
        uuid, path = str(vol.get("uuid") or ""), str(vol.get("installPath") or "")
        host_model = self._host_model()
        with self.node.db.tx() as s:
            ref = s.get(LocalStorageVolumeRefVO, uuid)
            if ref is None:
                return
            ps = s.get(PrimaryStorageVO, ref.primaryStorageUuid)
            host = s.get(host_model, ref.hostUuid) if host_model is not None else None
            root = ps.url if ps is not None else None
            hv = str(host.hypervisorType) if host is not None else ""
            host_uuid = ref.hostUuid
            s.delete(ref)
        backend = self._backend(hv)
        if root is None or backend is None or not path:
            return
        try:
            await backend.delete_volume(host_uuid, root, path)
        except Exception as exc:
            log.warning("volume %s: could not delete %s on host %s: %s", uuid, path, host_uuid, exc)
