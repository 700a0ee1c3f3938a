"""The ``vm-create`` chain. Each step undoes exactly what it did, so a failure anywhere leaves
no VM, NIC, address or volume, and gives back the host and storage capacity it took.

``ctx.data`` (persisted with the flow record) holds what the handler worked out: the VM's
UUID and size, the image, networks, disk sizes, scope and strategy.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select

from zmn.api.errors import OperationFailed
from zmn.core import crud
from zmn.core.db import utcnow
from zmn.core.flow import Flow, FlowContext
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.service import send
from zmn.core.vmhooks import VmAfterInstantiate
from zmn.services.vm.cloudinit import RecordCloudInit
from zmn.services.vm.common import hypervisor, load_vm, quietly, set_fields, set_state
from zmn.services.vm.models import VmInstanceVO, VmNicVO
from zmn.services.vm.nics import create_nic, remove_nics_of


def _instant(ctx: FlowContext) -> bool:
    return bool(ctx.data["strategy"] == "InstantStart")


class RecordVm(Flow):
    """Write the VM row (state Created) with its tags and owner."""

    name = "vm-create-record"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        fields = {
            "uuid": d["vmUuid"],
            "name": d["name"],
            "zoneUuid": d["zoneUuid"],
            "imageUuid": d["imageUuid"],
            "instanceOfferingUuid": d.get("instanceOfferingUuid"),
            "defaultL3NetworkUuid": d["defaultL3NetworkUuid"],
            "type": d["type"],
            "platform": d["platform"],
            "allocatorStrategy": d.get("allocatorStrategy"),
            "cpuNum": d["cpuNum"],
            "cpuSpeed": d.get("cpuSpeed", 0),
            "memorySize": d["memorySize"],
            "state": "Created",
        }
        msg = ctx.scratch.get("msg")
        if msg is None or msg.systemTags or msg.userTags:
            with ctx.call.tx() as s:
                crud.insert(ctx.call, s, "VmInstance", VmInstanceVO(**fields), msg)
            return
        # no tags (the common create): what crud.insert writes, as two cached Core inserts
        # (the row's values straight from the fields: an ORM object costs more than the insert)
        now = utcnow()
        values = {**_VM_EMPTY, **{k: v for k, v in fields.items() if v is not None}}
        values["description"] = msg.description
        values.update(createDate=now, lastOpDate=now)
        rt = ctx.call.node.resources.get("VmInstance")
        with ctx.call.node.db.fast() as conn:
            conn.execute(_INSERT_VM, values)
            if rt.owned:
                conn.execute(
                    _INSERT_OWNER,
                    {
                        "resourceUuid": d["vmUuid"],
                        "resourceType": "VmInstance",
                        "accountUuid": ctx.call.principal.accountUuid,
                        "createDate": now,
                    },
                )

    async def rollback(self, ctx: FlowContext) -> None:
        uuid = ctx.data["vmUuid"]
        with ctx.call.tx() as s:
            s.execute(delete(TagVO).where(TagVO.resourceUuid == uuid))
            s.execute(delete(AccountResourceRefVO).where(AccountResourceRefVO.resourceUuid == uuid))
            s.execute(delete(VmInstanceVO).where(VmInstanceVO.uuid == uuid))


_VM = cast(Table, VmInstanceVO.__table__)
_INSERT_VM = insert(_VM)
# every column of the VM row: its scalar default (what the ORM fills in at flush for a
# column left None), else None
_VM_EMPTY: dict[str, Any] = {
    c.key: cast(Any, c.default).arg if c.default is not None and c.default.is_scalar else None
    for c in _VM.columns
}
_INSERT_OWNER = insert(cast(Table, AccountResourceRefVO.__table__))


class SelectBackupStorage(Flow):
    """The image must be Ready on a backup storage attached to the VM's zone."""

    name = "vm-select-backup-storage"

    async def run(self, ctx: FlowContext) -> None:
        node = ctx.call.node
        d = ctx.data
        bs_rt = node.resources.types.get("BackupStorage")
        link_img = _link(node, "Image", "BackupStorage")
        link_zone = _link(node, "BackupStorage", "Zone")
        if bs_rt is None or link_img is None or link_zone is None:
            raise OperationFailed(
                "no backup storage service is loaded", code="VM_INSTANCE.NO_BACKUP_STORAGE"
            )
        key = (link_img, link_zone, bs_rt.model)
        stmt = _bs_statements.get(key)
        if stmt is None:
            stmt = _bs_statements[key] = _backup_storage_statement(link_img, link_zone, bs_rt.model)
        with node.db.fast() as conn:  # Core, a statement built once
            found = conn.scalars(stmt, {"image": d["imageUuid"], "zone": d["zoneUuid"]}).first()
        if found is None:
            raise OperationFailed(
                f"image {d['imageUuid']} is on no enabled, connected backup storage attached to"
                f" zone {d['zoneUuid']}",
                code="VM_INSTANCE.NO_BACKUP_STORAGE",
                field="imageUuid",
            )
        d["backupStorageUuid"] = found


_bs_statements: dict[Any, Any] = {}


def _backup_storage_statement(
    link_img: tuple[Any, str, str], link_zone: tuple[Any, str, str], bs: Any
) -> Any:
    """A Ready copy of the image on an enabled, connected backup storage of the zone."""
    img_t, img_col, img_bs_col = link_img
    zone_t, zone_bs_col, zone_col = link_zone
    return (
        select(getattr(img_t, img_bs_col))
        .where(getattr(img_t, img_col) == bindparam("image"))
        .where(img_t.status == "Ready")
        .where(
            getattr(img_t, img_bs_col).in_(
                select(getattr(zone_t, zone_bs_col)).where(
                    getattr(zone_t, zone_col) == bindparam("zone")
                )
            )
        )
        .where(
            getattr(img_t, img_bs_col).in_(
                select(bs.uuid).where(bs.state == "Enabled", bs.status == "Connected")
            )
        )
    )


def _link(node: Any, left: str, right: str) -> tuple[Any, str, str] | None:
    for link in node.resources.links:
        if link.left == left and link.right == right:
            return link.table, link.left_column, link.right_column
        if link.left == right and link.right == left:
            return link.table, link.right_column, link.left_column
    return None


class AllocateHostForVm(Flow):
    """Reserve CPUs and memory on a host (CreateStopped: only choose one, for its cluster)."""

    name = "vm-allocate-host"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        host = (
            await send(
                ctx.call,
                "AllocateHost",
                cpuNum=d["cpuNum"],
                memorySize=d["memorySize"],
                zoneUuid=d["zoneUuid"],
                clusterUuid=d.get("clusterUuid"),
                hostUuid=d.get("hostUuid"),
                l3NetworkUuids=d["l3NetworkUuids"],
                primaryStorageUuids=[d["psUuid"]] if d.get("psUuid") else [],
                primaryStorageSize=d["volumeBytes"],
                strategy=d.get("allocatorStrategy"),
                dryRun=not _instant(ctx),
                reservationKey=ctx.reservation_key(self.name) if _instant(ctx) else None,
            )
        )["host"]
        d["clusterUuid"] = host["clusterUuid"]
        d["hypervisorType"] = host["hypervisorType"]
        if _instant(ctx):
            d["hostUuid"] = d["allocatedHostUuid"] = host["uuid"]
            set_fields(
                ctx.call,
                d["vmUuid"],
                hostUuid=host["uuid"],
                clusterUuid=host["clusterUuid"],
                hypervisorType=host["hypervisorType"],
            )
        else:
            d["hostUuid"] = None
            set_fields(
                ctx.call,
                d["vmUuid"],
                clusterUuid=host["clusterUuid"],
                hypervisorType=host["hypervisorType"],
            )

    async def rollback(self, ctx: FlowContext) -> None:
        # by the reservation's key: also when the node died before the step's record named
        # the host (the reservation row is written with the capacity), and never twice
        d = ctx.data
        host = d.pop("allocatedHostUuid", None)
        key = ctx.reservation_key(self.name)
        if key is not None:
            await send(ctx.call, "ReleaseHostCapacity", reservationKey=key)
        elif host:
            await send(
                ctx.call,
                "ReleaseHostCapacity",
                hostUuid=host,
                cpuNum=d["cpuNum"],
                memorySize=d["memorySize"],
            )
        set_fields(ctx.call, d["vmUuid"], hostUuid=None, clusterUuid=None)


class AllocatePrimaryStorageForVm(Flow):
    """Take the bytes of every new volume on one primary storage of the cluster."""

    name = "vm-allocate-primary-storage"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        ps = (
            await send(
                ctx.call,
                "AllocatePrimaryStorage",
                size=d["volumeBytes"],
                clusterUuid=d["clusterUuid"],
                primaryStorageUuid=d.get("psUuid"),
                reservationKey=ctx.reservation_key(self.name),
            )
        )["primaryStorage"]
        d["psUuid"] = d["allocatedPsUuid"] = ps["uuid"]

    async def rollback(self, ctx: FlowContext) -> None:
        # by the reservation's key: also when the node died after the bytes were taken but
        # before the record named the storage, and never twice
        d = ctx.data
        ps = d.pop("allocatedPsUuid", None)
        key = ctx.reservation_key(self.name)
        if key is not None:
            await send(ctx.call, "ReleasePrimaryStorageCapacity", reservationKey=key)
        elif ps:
            await send(
                ctx.call,
                "ReleasePrimaryStorageCapacity",
                primaryStorageUuid=ps,
                size=d["volumeBytes"],
            )


class CreateVolumesForVm(Flow):
    """The root volume (device 0) and one data volume per disk offering (devices 1..n)."""

    name = "vm-create-volumes"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        d["volumeUuids"] = []
        try:
            root = (
                await send(
                    ctx.call,
                    "CreateVmVolume",
                    name=f"ROOT-for-{d['name']}",
                    type="Root",
                    size=d["rootSize"],
                    primaryStorageUuid=d["psUuid"],
                    vmInstanceUuid=d["vmUuid"],
                    deviceId=0,
                    rootImageUuid=d["imageUuid"],
                    diskOfferingUuid=d.get("rootDiskOfferingUuid"),
                    format=d["format"],
                )
            )["inventory"]
            d["volumeUuids"].append(root["uuid"])
            set_fields(ctx.call, d["vmUuid"], rootVolumeUuid=root["uuid"])
            for i, (offering, size) in enumerate(d["dataDisks"], start=1):
                vol = (
                    await send(
                        ctx.call,
                        "CreateVmVolume",
                        name=f"DATA-for-{d['name']}-{i}",
                        type="Data",
                        size=size,
                        primaryStorageUuid=d["psUuid"],
                        vmInstanceUuid=d["vmUuid"],
                        deviceId=i,
                        diskOfferingUuid=offering,
                        format="qcow2",
                    )
                )["inventory"]
                d["volumeUuids"].append(vol["uuid"])
        except BaseException:
            await self.rollback(ctx)
            raise

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        uuids = set(d.get("volumeUuids") or []) | set(_volumes_of(ctx, d["vmUuid"]))
        if uuids:  # the bytes go back with the primary-storage step's undo
            await send(ctx.call, "RemoveVolumes", volumeUuids=sorted(uuids), releaseCapacity=False)
        d["volumeUuids"] = []
        set_fields(ctx.call, d["vmUuid"], rootVolumeUuid=None)


def _volumes_of(ctx: FlowContext, vm_uuid: str) -> list[str]:
    """Volumes made for the VM (read through the registry), also those not yet recorded."""
    rt = ctx.call.node.resources.types.get("Volume")
    if rt is None:
        return []
    with ctx.call.tx() as s:
        return list(s.scalars(select(rt.model.uuid).where(rt.model.vmInstanceUuid == vm_uuid)))


class AllocateNics(Flow):
    """One NIC with an address on each L3 network (static addresses from staticIp tags)."""

    name = "vm-allocate-nics"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        try:
            for device, l3 in enumerate(d["l3NetworkUuids"]):
                await create_nic(
                    ctx.call,
                    d["vmUuid"],
                    l3,
                    device,
                    d["staticIps"].get(l3),
                    d.get("hypervisorType"),
                )
        except BaseException:
            await self.rollback(ctx)
            raise

    async def rollback(self, ctx: FlowContext) -> None:
        await _release_unrecorded_ips(ctx, ctx.data["vmUuid"])
        await remove_nics_of(ctx.call, ctx.data["vmUuid"], best_effort=True)


async def _release_unrecorded_ips(ctx: FlowContext, vm_uuid: str) -> None:
    """Addresses taken for the VM's NICs that the NIC rows do not name yet (the node died
    between the address's commit and the NIC's update): the address row names its NIC."""
    used_rt = ctx.call.node.resources.types.get("UsedIp")
    if used_rt is None or not hasattr(used_rt.model, "vmNicUuid"):
        return
    with ctx.call.tx() as s:
        nics = list(
            s.scalars(
                select(VmNicVO.uuid).where(
                    VmNicVO.vmInstanceUuid == vm_uuid, VmNicVO.usedIpUuid.is_(None)
                )
            )
        )
        used = (
            list(s.scalars(select(used_rt.model.uuid).where(used_rt.model.vmNicUuid.in_(nics))))
            if nics
            else []
        )
    for uuid in used:
        await send(ctx.call, "ReleaseIp", usedIpUuid=uuid)


class InstantiateVm(Flow):
    """Starting, then start the VM on its host."""

    name = "vm-instantiate"

    async def run(self, ctx: FlowContext) -> None:
        if not _instant(ctx):
            return
        d = ctx.data
        vm = await set_state(ctx.call, d["vmUuid"], "start")
        d["instantiated"] = True
        ctx.scratch["vm"] = vm  # the inventory the next steps see (not persisted)
        await hypervisor(ctx.call, d["hostUuid"], "start", vm)

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        if d.pop("instantiated", None):
            vm = load_vm(ctx.call, d["vmUuid"])
            await quietly(
                f"destroying VM {d['vmUuid']} on host {d['hostUuid']}",
                hypervisor(ctx.call, d["hostUuid"], "destroy", vm),
            )


class PostInstantiate(Flow):
    """``VmAfterInstantiate`` extension points (security groups, EIPs ...), undone in reverse."""

    name = "vm-post-instantiate"

    async def run(self, ctx: FlowContext) -> None:
        if not _instant(ctx):
            return
        d = ctx.data
        # starting the VM on its host changed no row: the inventory InstantiateVm built holds
        vm = ctx.scratch.get("vm") or load_vm(ctx.call, d["vmUuid"])
        done: list[str] = d.setdefault("instantiatedHooks", [])
        for impl in ctx.call.node.extensions.all(VmAfterInstantiate):  # type: ignore[type-abstract]
            try:
                await impl.after_vm_instantiate(vm, d["hostUuid"])
            except BaseException:
                await self.rollback(ctx)
                raise
            done.append(type(impl).__name__)

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        done: list[str] = d.pop("instantiatedHooks", [])
        if not done:
            return
        vm = load_vm(ctx.call, d["vmUuid"])
        impls = ctx.call.node.extensions.all(VmAfterInstantiate)  # type: ignore[type-abstract]
        for impl in reversed([i for i in impls if type(i).__name__ in done]):
            await quietly(
                f"{type(impl).__name__}.rollback_vm_instantiate",
                impl.rollback_vm_instantiate(vm, d["hostUuid"]),
            )


VM_CREATE_CHAIN = "vm-create"
VM_CREATE_FLOWS: list[type[Flow]] = [
    RecordVm,
    RecordCloudInit,
    SelectBackupStorage,
    AllocateHostForVm,
    AllocatePrimaryStorageForVm,
    CreateVolumesForVm,
    AllocateNics,
    InstantiateVm,
    PostInstantiate,
]
