"""The ``vm-destroy`` and ``vm-expunge`` chains.

Destroy takes the VM off its host and gives the capacity back; its NICs, addresses and volumes
stay, so ``RecoverVmInstance`` can bring it back. Expunge removes them and the VM row. Expunge
steps are idempotent rather than undoable: a failed expunge leaves the VM Destroyed with what
is left, and the next expunge (or the reaper) finishes it.
"""

from __future__ import annotations

from sqlalchemy import delete

from zmn.core.flow import Flow, FlowContext
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.service import send
from zmn.core.vmhooks import VmAfterDestroy, VmBeforeExpunge
from zmn.services.vm import cloudinit
from zmn.services.vm.common import host_status, hypervisor, load_vm, quietly, set_fields
from zmn.services.vm.models import VmInstanceVO
from zmn.services.vm.nics import remove_nics_of


class DestroyOnHypervisor(Flow):
    """Destroy the VM on its host (skipped when the host is unreachable: it is gone there)."""

    name = "vm-destroy-on-hypervisor"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        host = d.get("hostUuid")
        if not host or host_status(ctx.call, host) != "Connected":
            return
        vm = load_vm(ctx.call, d["vmUuid"])
        await hypervisor(ctx.call, host, "destroy", vm)
        d["destroyedOnHost"] = True

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        if not d.pop("destroyedOnHost", None) or d["from"] not in ("Running", "Paused"):
            return
        vm = load_vm(ctx.call, d["vmUuid"])
        await quietly(
            f"starting VM {vm['uuid']} again", hypervisor(ctx.call, d["hostUuid"], "start", vm)
        )
        if d["from"] == "Paused":
            await quietly(
                f"pausing VM {vm['uuid']} again", hypervisor(ctx.call, d["hostUuid"], "pause", vm)
            )


class DestroyReleaseHost(Flow):
    name = "vm-destroy-release-host"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        host = d.get("hostUuid")
        if not host:
            return
        vm = load_vm(ctx.call, d["vmUuid"])
        await send(
            ctx.call,
            "ReleaseHostCapacity",
            hostUuid=host,
            cpuNum=vm["cpuNum"],
            memorySize=vm["memorySize"],
        )
        set_fields(ctx.call, d["vmUuid"], hostUuid=None, lastHostUuid=host)
        d["released"] = True

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        if not d.pop("released", None):
            return
        vm = load_vm(ctx.call, d["vmUuid"])
        await send(
            ctx.call,
            "ReserveHostCapacity",
            hostUuid=d["hostUuid"],
            cpuNum=vm["cpuNum"],
            memorySize=vm["memorySize"],
        )
        set_fields(ctx.call, d["vmUuid"], hostUuid=d["hostUuid"])


class AfterDestroy(Flow):
    name = "vm-after-destroy"

    async def run(self, ctx: FlowContext) -> None:
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        for impl in ctx.call.node.extensions.all(VmAfterDestroy):  # type: ignore[type-abstract]
            await impl.after_vm_destroy(vm)


class BeforeExpunge(Flow):
    name = "vm-before-expunge"

    async def run(self, ctx: FlowContext) -> None:
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        for impl in ctx.call.node.extensions.all(VmBeforeExpunge):  # type: ignore[type-abstract]
            await impl.before_vm_expunge(vm)


class ExpungeNics(Flow):
    name = "vm-expunge-nics"

    async def run(self, ctx: FlowContext) -> None:
        await remove_nics_of(ctx.call, ctx.data["vmUuid"])


class ExpungeVolumes(Flow):
    """The root volume goes (its bytes back to its storage); data volumes are detached."""

    name = "vm-expunge-volumes"

    async def run(self, ctx: FlowContext) -> None:
        set_fields(ctx.call, ctx.data["vmUuid"], rootVolumeUuid=None)
        if "ExpungeVmVolumes" in ctx.call.node.apis.apis:
            await send(ctx.call, "ExpungeVmVolumes", vmInstanceUuid=ctx.data["vmUuid"])


class ExpungeRecord(Flow):
    name = "vm-expunge-record"

    async def run(self, ctx: FlowContext) -> None:
        uuid = ctx.data["vmUuid"]
        node = ctx.call.node
        with ctx.call.tx() as s:
            for table, column in node.resources.links_of("VmInstance"):
                s.execute(delete(table).where(getattr(table, column) == uuid))
            s.execute(delete(TagVO).where(TagVO.resourceUuid == uuid))
            s.execute(delete(AccountResourceRefVO).where(AccountResourceRefVO.resourceUuid == uuid))
            s.execute(delete(VmInstanceVO).where(VmInstanceVO.uuid == uuid))
            cloudinit.remove(s, uuid)


VM_DESTROY_CHAIN = "vm-destroy"
VM_DESTROY_FLOWS: list[type[Flow]] = [DestroyOnHypervisor, DestroyReleaseHost, AfterDestroy]
VM_EXPUNGE_CHAIN = "vm-expunge"
VM_EXPUNGE_FLOWS: list[type[Flow]] = [BeforeExpunge, ExpungeNics, ExpungeVolumes, ExpungeRecord]
