"""``LocalStorageMigrateVolume``: volumes on local storage copied to another host's directory.

A root volume moves with its VM (which must be Stopped) and all the VM's volumes on local
storage of the same host; a detached data volume moves alone; an attached data volume is
refused (move its VM's root volume). The work holds the VM's task-queue slot, so no start of
the VM runs meanwhile, and is the chain ``local-storage-migrate-volume``:

1. ``local-migrate-check``: every file is on the source host and not on the destination (a
   directory shared by both would be copied onto itself); the destination's directory has
   room for them (its ``statvfs`` against the files' allocated bytes). No side effect.
2. ``local-migrate-copy``: each file copied by the hypervisor plugin (KVM: the backing image
   into the destination's cache, then SFTP to SFTP through the node, into
   ``<path>.migrating``, renamed when whole). Undo: the destination's copies and partial files
   are deleted (only for volumes whose record still names the source).
3. ``local-migrate-record``: in one transaction the volumes' host (``local_storage_volume_ref``)
   and the VM's ``lastHostUuid`` become the destination. Undo: back to the source.

Then (the chain is done) the source's files are deleted and both hosts report their capacity
again. The storage's capacity does not change (the bytes stay on the same storage: counted
exactly once); a stopped VM holds no host capacity. A failure at any step undoes the done ones:
the VM and its volumes stay on the source, the destination holds nothing. At restart a run
with every step done is finished (source files deleted); any other is rolled back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.api.errors import InvalidArgument, InvalidState, OperationFailed
from zmn.core import crud
from zmn.core.flow import Flow, FlowContext
from zmn.core.recovery import ChainRecovery, Recovered, recover_chains
from zmn.core.service import Call, handler
from zmn.services.primary_storage.api import LocalStorageMigrateVolume
from zmn.services.primary_storage.models import (
    LocalStorageVolumeRefVO,
    PrimaryStorageClusterRefVO,
    PrimaryStorageVO,
)

if TYPE_CHECKING:
    from zmn.core.node import Node
    from zmn.services.primary_storage.local import LocalStorageBackend

log = logging.getLogger("zmn.storage.migrate")

MIGRATE_CHAIN = "local-storage-migrate-volume"
LOCAL = "LocalStorage"
PART = ".migrating"


def _backend(node: Node, host_uuid: str) -> LocalStorageBackend:
    from zmn.services.primary_storage.local import LocalStorageBackend

    model = node.resources.get("Host").model
    with node.db.tx() as s:
        h = s.get(model, host_uuid)
        hv = "" if h is None else str(h.hypervisorType)
    impl = node.extensions.first(LocalStorageBackend, hypervisor_type=hv)  # type: ignore[type-abstract]
    if impl is not None:
        return impl
    raise OperationFailed(
        f"host {host_uuid} ({hv or 'gone'}) has no local storage plugin to move volumes with",
        code="PRIMARY_STORAGE.LOCAL_MIGRATE_FAILED",
    )


class MigrateCheck(Flow):
    """The files are on the source; the destination has room for them."""

    name = "local-migrate-check"

    async def run(self, ctx: FlowContext) -> None:
        d, node = ctx.data, ctx.call.node
        src = _backend(node, d["srcHostUuid"])
        need: dict[str, int] = {}
        for vol in d["volumes"]:
            got = await src.volume_stat(d["srcHostUuid"], vol["path"])
            if not got.get("exists"):
                raise OperationFailed(
                    f"volume {vol['uuid']}: its file {vol['path']} is not on host"
                    f" {d['srcHostUuid']}, where the record says it is",
                    code="PRIMARY_STORAGE.LOCAL_MIGRATE_FAILED",
                    volumeUuid=vol["uuid"],
                )
            need[vol["root"]] = need.get(vol["root"], 0) + int(got.get("actualSize") or 0)
        dst = _backend(node, d["destHostUuid"])
        for vol in d["volumes"]:  # the same file seen from both: never copy onto itself
            if (await dst.volume_stat(d["destHostUuid"], vol["path"])).get("exists"):
                raise OperationFailed(
                    f"destHostUuid: host {d['destHostName']} already has a file at"
                    f" {vol['path']}: the local storage directory looks shared between the"
                    " hosts (use SharedMountPoint storage for that) or holds a stale copy;"
                    " remove it or choose another host",
                    code="PRIMARY_STORAGE.LOCAL_MIGRATE_FAILED",
                    field="destHostUuid",
                )
        for root, size in need.items():
            _total, free = await dst.storage_capacity(d["destHostUuid"], root)
            if free < size:
                raise OperationFailed(
                    f"destHostUuid: host {d['destHostName']} has {free} bytes free in {root};"
                    f" the volumes need {size}: free space there or choose another host",
                    code="PRIMARY_STORAGE.LOCAL_MIGRATE_NO_SPACE",
                    field="destHostUuid",
                    free=free,
                    size=size,
                )


def _still_on_source(ctx: FlowContext, volume_uuid: str) -> bool:
    with ctx.call.tx() as s:
        ref = s.get(LocalStorageVolumeRefVO, volume_uuid)
        return ref is not None and ref.hostUuid == ctx.data["srcHostUuid"]


class MigrateCopy(Flow):
    """Each file copied to the same path on the destination host."""

    name = "local-migrate-copy"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        dst = _backend(ctx.call.node, d["destHostUuid"])
        try:
            for vol in d["volumes"]:
                await dst.copy_volume(
                    d["srcHostUuid"],
                    d["destHostUuid"],
                    vol["root"],
                    vol["path"],
                    vol["path"] + PART,
                    vol.get("imageUuid"),
                )
        except BaseException:  # a failed step is not rolled back: the copies made so far go
            await self.rollback(ctx)
            raise

    async def rollback(self, ctx: FlowContext) -> None:
        """Also run for a copy in progress when the node died: every copy and partial file
        on the destination goes (never the file of a volume recorded there)."""
        d = ctx.data
        dst = _backend(ctx.call.node, d["destHostUuid"])
        for vol in d["volumes"]:
            if not _still_on_source(ctx, vol["uuid"]):
                continue
            for path in (vol["path"] + PART, vol["path"]):
                try:
                    await dst.delete_volume(d["destHostUuid"], vol["root"], path)
                except Exception as exc:  # logged: the other files still go
                    log.warning("could not delete %s on %s: %s", path, d["destHostUuid"], exc)


class MigrateRecord(Flow):
    """The volumes and the VM now belong to the destination host (one transaction)."""

    name = "local-migrate-record"

    async def run(self, ctx: FlowContext) -> None:
        _move_records(ctx, ctx.data["srcHostUuid"], ctx.data["destHostUuid"])

    async def rollback(self, ctx: FlowContext) -> None:
        _move_records(ctx, ctx.data["destHostUuid"], ctx.data["srcHostUuid"])


def _move_records(ctx: FlowContext, frm: str, to: str) -> None:
    d, node = ctx.data, ctx.call.node
    ref = LocalStorageVolumeRefVO
    with ctx.call.tx() as s:
        s.execute(
            update(ref)
            .where(ref.volumeUuid.in_([v["uuid"] for v in d["volumes"]]), ref.hostUuid == frm)
            .values(hostUuid=to)
            .execution_options(synchronize_session=False)
        )
        if d.get("vmUuid"):
            vm = node.resources.get("VmInstance").model
            s.execute(
                update(vm)
                .where(vm.uuid == d["vmUuid"], vm.hostUuid.is_(None))
                .values(lastHostUuid=to)
                .execution_options(synchronize_session=False)
            )


CHAIN = [MigrateCheck, MigrateCopy, MigrateRecord]


async def finish(ctx: FlowContext) -> dict[str, Any] | None:
    """After the chain (or at recovery of a run whose steps were all done): the source's
    files go (only of volumes recorded on the destination), both hosts report capacity."""
    d, node = ctx.data, ctx.call.node
    src = _backend(node, d["srcHostUuid"])
    for vol in d["volumes"]:
        if _still_on_source(ctx, vol["uuid"]):
            continue
        try:
            await src.delete_volume(d["srcHostUuid"], vol["root"], vol["path"])
        except Exception as exc:  # the copy is the volume now; a stray file is only space
            log.warning("volume %s: old file on %s kept: %s", vol["uuid"], d["srcHostUuid"], exc)
    try:
        for host in (d["srcHostUuid"], d["destHostUuid"]):
            await node.services["primaryStorage"].sync_local(host_uuid=host)  # type: ignore[attr-defined]
    except Exception as exc:
        log.warning("capacity after moving volumes not refreshed: %s", exc)
    rt = node.resources.get("Volume")
    with node.db.tx() as s:
        row = s.get(rt.model, d["volumeUuid"])
        inv = None if row is None else rt.inventories(s, [row])[0]
    await ctx.call.publish(
        "/volume/migrated",
        {"volumeUuid": d["volumeUuid"], "srcHostUuid": d["srcHostUuid"],
         "destHostUuid": d["destHostUuid"], "vmUuid": d.get("vmUuid")},
    )  # fmt: skip
    return {"inventory": inv}


async def recover(node: Node, of_node: str | None = None) -> list[Recovered]:
    return await recover_chains(
        node,
        {MIGRATE_CHAIN: ChainRecovery(finish=finish)},
        of_node=of_node,
        api="RecoverInterruptedLocalStorageMigrations",
    )


class LocalMigrateHandlers:
    node: Node

    def _plan(self, call: Call, msg: LocalStorageMigrateVolume) -> dict[str, Any]:
        """What moves, from where to where; every refusal names the field and the fix."""
        vol_rt = self.node.resources.get("Volume")
        host_rt = self.node.resources.get("Host")
        with call.tx() as s:
            vol = crud.get_row(s, vol_rt, msg.volumeUuid, "volumeUuid")
            dest = crud.get_row(s, host_rt, msg.destHostUuid, "destHostUuid")
            ps = s.get(PrimaryStorageVO, vol.primaryStorageUuid) if vol.primaryStorageUuid else None
            if ps is None or ps.type != LOCAL:
                raise InvalidArgument(
                    f"volumeUuid: volume {vol.name} is not on local primary storage (it is on"
                    f" {ps.type if ps else 'no storage yet'}); only local storage volumes move"
                    " between hosts",
                    field="volumeUuid",
                )
            ref = s.get(LocalStorageVolumeRefVO, vol.uuid)
            if ref is None:
                raise InvalidArgument(
                    f"volumeUuid: volume {vol.name} has no file on any host yet (it is made"
                    " when its VM first starts): there is nothing to move",
                    field="volumeUuid",
                )
            src = s.get(host_rt.model, ref.hostUuid)
            if dest.uuid == ref.hostUuid:
                raise InvalidArgument(
                    f"destHostUuid: volume {vol.name} is on host {dest.name} already",
                    field="destHostUuid",
                )
            attached = s.get(PrimaryStorageClusterRefVO, (ps.uuid, dest.clusterUuid))
            if attached is None or (src is not None and src.hypervisorType != dest.hypervisorType):
                raise InvalidArgument(
                    f"destHostUuid: host {dest.name} is not in a cluster primary storage"
                    f" {ps.name} is attached to (with the source's hypervisor); choose a host"
                    " of such a cluster",
                    field="destHostUuid",
                )
            if dest.status != "Connected" or dest.state != "Enabled":
                raise InvalidState(
                    f"destHostUuid: host {dest.name} is {dest.state}/{dest.status}; it must be"
                    " Enabled and Connected",
                    code="PRIMARY_STORAGE.LOCAL_MIGRATE_HOST",
                    field="destHostUuid",
                )
            if src is None or src.status != "Connected":
                raise InvalidState(
                    f"volumeUuid: the source host {ref.hostUuid} of volume {vol.name} is not"
                    " connected; its files cannot be read",
                    code="PRIMARY_STORAGE.LOCAL_MIGRATE_HOST",
                    field="volumeUuid",
                )
            vm_uuid = vol.vmInstanceUuid
            if vm_uuid and vol.type != "Root":
                raise InvalidArgument(
                    f"volumeUuid: data volume {vol.name} is attached to VM {vm_uuid}: migrate"
                    " the VM's root volume (its volumes on local storage move with it) or"
                    " detach it first",
                    field="volumeUuid",
                )
            moving = [vol]
            if vm_uuid:
                others = s.scalars(
                    select(vol_rt.model).where(
                        vol_rt.model.vmInstanceUuid == vm_uuid, vol_rt.model.uuid != vol.uuid
                    )
                )
                for other in others:
                    oref = s.get(LocalStorageVolumeRefVO, other.uuid)
                    if oref is not None and oref.hostUuid == src.uuid:
                        moving.append(other)
            volumes = []
            for v in moving:
                vps = s.get(PrimaryStorageVO, v.primaryStorageUuid)
                assert vps is not None  # noqa: S101 - it has a local ref, so a storage
                volumes.append(
                    {
                        "uuid": v.uuid,
                        "path": v.installPath,
                        "root": str(vps.mountPath or vps.url),
                        "imageUuid": v.rootImageUuid if v.type == "Root" else None,
                    }
                )
            return {
                "volumeUuid": vol.uuid,
                "vmUuid": vm_uuid,
                "srcHostUuid": src.uuid,
                "destHostUuid": dest.uuid,
                "destHostName": dest.name,
                "volumes": volumes,
            }

    def _check_vm_stopped(self, vm_uuid: str) -> None:
        vm_rt = self.node.resources.get("VmInstance")
        with self.node.db.tx() as s:
            vm = s.get(vm_rt.model, vm_uuid)
            state = None if vm is None else vm.state
        if state != "Stopped":
            raise InvalidState(
                f"volumeUuid: VM {vm_uuid} is {state}; stop it before moving its volumes"
                " (a running VM on local storage cannot move)",
                code="PRIMARY_STORAGE.LOCAL_MIGRATE_VM_STATE",
                field="volumeUuid",
            )

    @handler(LocalStorageMigrateVolume)
    async def local_storage_migrate_volume(
        self, msg: LocalStorageMigrateVolume, call: Call
    ) -> dict[str, Any]:
        plan = self._plan(call, msg)
        vm_uuid = plan.get("vmUuid")
        if not vm_uuid:
            return await self._migrate(call, plan)
        async with self.node.queues.vm(vm_uuid, "LocalStorageMigrateVolume"):
            plan = self._plan(call, msg)  # again, now that no VM operation runs
            self._check_vm_stopped(vm_uuid)
            return await self._migrate(call, plan)

    async def _migrate(self, call: Call, plan: dict[str, Any]) -> dict[str, Any]:
        ctx = FlowContext(call, plan)
        await self.node.flows.chain(MIGRATE_CHAIN).run(ctx)
        return await finish(ctx) or {}
