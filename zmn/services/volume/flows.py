"""The ``volume-attach`` and ``volume-detach`` chains.

``ctx.data`` (persisted with the chain's record) holds ``volumeUuid``, ``vmUuid`` and ``vm``
(the VM's inventory as ``CheckVmOperation`` gave it), then what each step did, so that a
node that died in the middle undoes exactly that at its next start. Every undo is safe to
run for a step that never ran or ran only in part (recovery undoes the step in progress):
it checks the row before changing it, and a hypervisor undo is an idempotent detach/attach
whose failure is logged, not raised.

At restart (:func:`recover`): a chain whose every step was done is finished (the job
succeeds with the volume's inventory); any other is rolled back, so the volume is exactly
as it was before the call: detached (and NotInstantiated again if the attach gave it its
storage), or still attached for an interrupted detach.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from zmn.api.errors import Conflict, InvalidArgument
from zmn.core import links
from zmn.core.flow import Flow, FlowContext
from zmn.core.recovery import ChainRecovery, Recovered, recover_chains
from zmn.core.service import Call, send
from zmn.services.volume.models import VolumeVO
from zmn.services.volume.store import install_path, volume_inventory

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.volume")

ATTACH_CHAIN = "volume-attach"
DETACH_CHAIN = "volume-detach"
VOLUME_CHAINS = (ATTACH_CHAIN, DETACH_CHAIN)
PLUGGED_STATES = ("Running", "Paused")  # a volume is hot-plugged into a VM in these


def _on_host(vm: dict[str, Any] | None) -> str | None:
    """The host whose hypervisor has the VM's devices, if it runs."""
    if vm and vm.get("state") in PLUGGED_STATES and vm.get("hostUuid"):
        return str(vm["hostUuid"])
    return None


async def _hypervisor(call: Call, op: str, vm: dict[str, Any], volume: dict[str, Any]) -> None:
    host = _on_host(vm)
    if host:
        await send(call, "HypervisorOp", hostUuid=host, op=op, vm=vm, args={"volume": volume})


async def _undo_on_hypervisor(
    call: Call, op: str, vm: dict[str, Any] | None, volume: dict[str, Any]
) -> None:
    if not _on_host(vm):
        return
    assert vm is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
    try:
        await _hypervisor(call, op, vm, volume)
    except Exception:  # the other undo steps still run; the VM's next start redoes its disks
        log.warning("undo %s of volume %s on VM %s failed", op, volume["uuid"], vm["uuid"])


def _reachable(call: Call, ps_uuid: str, cluster_uuid: str) -> bool:
    for link in call.node.resources.links:
        if link.left == "PrimaryStorage" and link.right == "Cluster":
            with call.tx() as s:
                return links.linked(s, link, ps_uuid, cluster_uuid)
    return False


# ----------------------------------------------------------------------------- attach


class AttachInstantiate(Flow):
    """Give a NotInstantiated volume storage the VM's cluster reaches (or check it has)."""

    name = "volume-attach-instantiate"

    async def run(self, ctx: FlowContext) -> None:
        d, call = ctx.data, ctx.call
        vm = d["vm"]
        with call.tx() as s:
            vol = s.get(VolumeVO, d["volumeUuid"])
            assert vol is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
            ps_uuid, size, fmt, name = vol.primaryStorageUuid, vol.size, vol.format, vol.name
        cluster = vm.get("clusterUuid")
        if ps_uuid:
            if cluster and not _reachable(call, ps_uuid, cluster):
                raise InvalidArgument(
                    f"volumeUuid: volume {name} is on primary storage {ps_uuid}, which VM"
                    f" {vm['name']}'s cluster cannot reach",
                    code="VOLUME.UNREACHABLE",
                    field="volumeUuid",
                )
            return
        scope = {"clusterUuid": cluster} if cluster else {"zoneUuid": vm["zoneUuid"]}
        ps = (await send(call, "AllocatePrimaryStorage", size=size, **scope))["primaryStorage"]
        path = install_path(call, ps["uuid"], d["volumeUuid"], fmt)
        with call.tx() as s:  # only if no concurrent attach gave it storage meanwhile
            won = s.execute(
                update(VolumeVO)
                .where(VolumeVO.uuid == d["volumeUuid"], VolumeVO.primaryStorageUuid.is_(None))
                .values(primaryStorageUuid=ps["uuid"], installPath=path, status="Ready")
            ).rowcount
        if not won:
            await send(
                call, "ReleasePrimaryStorageCapacity", primaryStorageUuid=ps["uuid"], size=size
            )
            return
        d["instantiated"] = {"primaryStorageUuid": ps["uuid"], "size": size}

    async def rollback(self, ctx: FlowContext) -> None:
        done = ctx.data.pop("instantiated", None)
        if not done:
            return
        ps = done["primaryStorageUuid"]
        with ctx.call.tx() as s:  # not if another attach (that won) has the volume now
            undone = s.execute(
                update(VolumeVO)
                .where(
                    VolumeVO.uuid == ctx.data["volumeUuid"],
                    VolumeVO.primaryStorageUuid == ps,
                    VolumeVO.vmInstanceUuid.is_(None),
                )
                .values(primaryStorageUuid=None, installPath=None, status="NotInstantiated")
            ).rowcount
        if undone:
            await send(
                ctx.call, "ReleasePrimaryStorageCapacity", primaryStorageUuid=ps, size=done["size"]
            )


class AttachRecord(Flow):
    """The volume names the VM, with the next device number after the VM's disks."""

    name = "volume-attach-record"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        with ctx.call.tx() as s:
            top = s.scalar(
                select(func.max(VolumeVO.deviceId)).where(VolumeVO.vmInstanceUuid == d["vmUuid"])
            )
            device = 1 if top is None else int(top) + 1
            won = s.execute(
                update(VolumeVO)
                .where(VolumeVO.uuid == d["volumeUuid"], VolumeVO.vmInstanceUuid.is_(None))
                .values(vmInstanceUuid=d["vmUuid"], deviceId=device)
            ).rowcount
        if not won:  # an attach to another VM (another VM's queue) won the race
            raise Conflict(
                f"volumeUuid: volume {d['volumeUuid']} was attached to another VM meanwhile",
                code="VOLUME.ALREADY_ATTACHED",
                field="volumeUuid",
            )
        d["deviceId"] = device

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        with ctx.call.tx() as s:
            row = s.get(VolumeVO, d["volumeUuid"])
            if row is not None and row.vmInstanceUuid == d["vmUuid"]:
                row.vmInstanceUuid = None
                row.deviceId = None
        d.pop("deviceId", None)


class AttachOnHypervisor(Flow):
    """Hot-plug the disk into a running or paused VM (nothing to do for a stopped one)."""

    name = "volume-attach-on-hypervisor"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        await _hypervisor(
            ctx.call, "attachVolume", d["vm"], volume_inventory(ctx.call, d["volumeUuid"])
        )

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        volume = {"uuid": d["volumeUuid"], "deviceId": d.get("deviceId")}
        await _undo_on_hypervisor(ctx.call, "detachVolume", d["vm"], volume)


# ----------------------------------------------------------------------------- detach


class DetachOnHypervisor(Flow):
    """Unplug the disk from a running or paused VM."""

    name = "volume-detach-on-hypervisor"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        await _hypervisor(ctx.call, "detachVolume", d["vm"], d["volume"])

    async def rollback(self, ctx: FlowContext) -> None:
        # plugging a disk back in is idempotent: also right when the node died mid-step
        d = ctx.data
        await _undo_on_hypervisor(ctx.call, "attachVolume", d["vm"], d["volume"])


class DetachRecord(Flow):
    """The volume no longer names the VM."""

    name = "volume-detach-record"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        with ctx.call.tx() as s:
            row = s.get(VolumeVO, d["volumeUuid"])
            if row is not None and row.vmInstanceUuid == d["vmUuid"]:
                row.vmInstanceUuid = None
                row.deviceId = None

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        if d.get("vm") is None:
            return  # a VM that is gone gets nothing back
        with ctx.call.tx() as s:
            row = s.get(VolumeVO, d["volumeUuid"])
            if row is not None and row.vmInstanceUuid is None:
                row.vmInstanceUuid = d["vmUuid"]
                row.deviceId = d["volume"].get("deviceId")


CHAINS: dict[str, list[type[Flow]]] = {
    ATTACH_CHAIN: [AttachInstantiate, AttachRecord, AttachOnHypervisor],
    DETACH_CHAIN: [DetachOnHypervisor, DetachRecord],
}


# ----------------------------------------------------------------------------- recovery


async def _finished(ctx: FlowContext) -> dict[str, Any]:
    d = ctx.data
    inv = volume_inventory(ctx.call, d["volumeUuid"])
    event = "/volume/attached" if ctx.chain == ATTACH_CHAIN else "/volume/detached"
    await ctx.call.publish(event, {"vmInstanceUuid": d["vmUuid"], "inventory": inv})
    return {"inventory": inv}


async def recover(node: Node, of_node: str | None = None) -> list[Recovered]:
    """Finish or roll back the attaches and detaches a node (this one, or an evicted one)
    left unfinished."""
    return await recover_chains(
        node,
        {chain: ChainRecovery(finish=_finished) for chain in VOLUME_CHAINS},
        of_node=of_node,
        api="RecoverInterruptedVolumeOperations",
    )
