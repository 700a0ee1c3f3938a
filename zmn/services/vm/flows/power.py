"""The ``vm-start``, ``vm-stop``, ``vm-reboot``, ``vm-pause`` and ``vm-resume`` chains.

The handler moves the VM into the transitional state before the chain and to the final (or
back to the previous) state after it; the flows do the work and undo it. ``ctx.data`` holds
``vmUuid`` and, once known, ``hostUuid``.
"""

from __future__ import annotations

from zmn.core.flow import Flow, FlowContext
from zmn.core.service import send
from zmn.core.vmhooks import VmAfterStart, VmAfterStop, VmBeforeStart
from zmn.services.vm.common import hypervisor, load_vm, quietly, set_fields


def _volume_storages(vm: dict[str, object]) -> list[str]:
    vols = vm.get("allVolumes") or []
    assert isinstance(vols, list)  # noqa: S101 - type narrowing for mypy, not a runtime check
    return sorted({v["primaryStorageUuid"] for v in vols if v.get("primaryStorageUuid")})


class StartAllocateHost(Flow):
    """Reserve capacity on a host that reaches the VM's networks and storage (last host first)."""

    name = "vm-start-allocate-host"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        vm = load_vm(ctx.call, d["vmUuid"])
        host = (
            await send(
                ctx.call,
                "AllocateHost",
                cpuNum=vm["cpuNum"],
                memorySize=vm["memorySize"],
                zoneUuid=vm["zoneUuid"],
                clusterUuid=d.get("clusterUuid"),
                hostUuid=d.get("hostUuid"),
                l3NetworkUuids=[n["l3NetworkUuid"] for n in vm["vmNics"]],
                primaryStorageUuids=_volume_storages(vm),
                preferHostUuid=vm["lastHostUuid"],
                strategy=vm["allocatorStrategy"],
                reservationKey=ctx.reservation_key(self.name),
            )
        )["host"]
        d["hostUuid"] = host["uuid"]
        d["reserved"] = [vm["cpuNum"], vm["memorySize"]]
        set_fields(
            ctx.call,
            d["vmUuid"],
            hostUuid=host["uuid"],
            clusterUuid=host["clusterUuid"],
            hypervisorType=host["hypervisorType"],
        )

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        reserved = d.pop("reserved", None)
        key = ctx.reservation_key(self.name)
        if key is not None:  # exactly once, also when the record missed the reservation
            await send(ctx.call, "ReleaseHostCapacity", reservationKey=key)
        elif reserved:
            cpu, memory = reserved
            await send(
                ctx.call,
                "ReleaseHostCapacity",
                hostUuid=d["hostUuid"],
                cpuNum=cpu,
                memorySize=memory,
            )
        if reserved:
            set_fields(ctx.call, d["vmUuid"], hostUuid=None)


class BeforeStart(Flow):
    name = "vm-before-start"

    async def run(self, ctx: FlowContext) -> None:
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        for impl in ctx.call.node.extensions.all(VmBeforeStart):  # type: ignore[type-abstract]
            await impl.before_vm_start(vm, ctx.data["hostUuid"])


class StartOnHypervisor(Flow):
    name = "vm-start-on-hypervisor"

    async def run(self, ctx: FlowContext) -> None:
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        await hypervisor(ctx.call, ctx.data["hostUuid"], "start", vm)
        ctx.data["started"] = True

    async def rollback(self, ctx: FlowContext) -> None:
        if not ctx.data.pop("started", None):
            return
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        await quietly(
            f"stopping VM {vm['uuid']} again",
            hypervisor(ctx.call, ctx.data["hostUuid"], "stop", vm, type="cold"),
        )


class AfterStart(Flow):
    name = "vm-after-start"

    async def run(self, ctx: FlowContext) -> None:
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        for impl in ctx.call.node.extensions.all(VmAfterStart):  # type: ignore[type-abstract]
            await impl.after_vm_start(vm, ctx.data["hostUuid"])


class StopOnHypervisor(Flow):
    name = "vm-stop-on-hypervisor"

    async def run(self, ctx: FlowContext) -> None:
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        await hypervisor(ctx.call, ctx.data["hostUuid"], "stop", vm, type=ctx.data["type"])
        ctx.data["stopped"] = True

    async def rollback(self, ctx: FlowContext) -> None:
        if not ctx.data.pop("stopped", None):
            return
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        await quietly(
            f"starting VM {vm['uuid']} again",
            hypervisor(ctx.call, ctx.data["hostUuid"], "start", vm),
        )
        if ctx.data.get("from") == "Paused":
            await quietly(
                f"pausing VM {vm['uuid']} again",
                hypervisor(ctx.call, ctx.data["hostUuid"], "pause", vm),
            )


class StopReleaseHost(Flow):
    """Give the host its CPUs and memory back; the VM keeps ``lastHostUuid``."""

    name = "vm-stop-release-host"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        vm = load_vm(ctx.call, d["vmUuid"])
        await send(
            ctx.call,
            "ReleaseHostCapacity",
            hostUuid=d["hostUuid"],
            cpuNum=vm["cpuNum"],
            memorySize=vm["memorySize"],
        )
        set_fields(ctx.call, d["vmUuid"], hostUuid=None, lastHostUuid=d["hostUuid"])
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


class AfterStop(Flow):
    name = "vm-after-stop"

    async def run(self, ctx: FlowContext) -> None:
        vm = load_vm(ctx.call, ctx.data["vmUuid"])
        for impl in ctx.call.node.extensions.all(VmAfterStop):  # type: ignore[type-abstract]
            await impl.after_vm_stop(vm, ctx.data["hostUuid"])


def _simple(flow_name: str, op: str, undo: str | None) -> type[Flow]:
    class Simple(Flow):
        name = flow_name

        async def run(self, ctx: FlowContext) -> None:
            vm = load_vm(ctx.call, ctx.data["vmUuid"])
            await hypervisor(ctx.call, ctx.data["hostUuid"], op, vm)
            ctx.data["done"] = True

        async def rollback(self, ctx: FlowContext) -> None:
            if undo and ctx.data.pop("done", None):
                vm = load_vm(ctx.call, ctx.data["vmUuid"])
                await quietly(
                    f"{undo} VM {vm['uuid']}", hypervisor(ctx.call, ctx.data["hostUuid"], undo, vm)
                )

    Simple.__name__ = Simple.__qualname__ = "".join(p.title() for p in flow_name.split("-"))
    return Simple


RebootOnHypervisor = _simple("vm-reboot-on-hypervisor", "reboot", None)
PauseOnHypervisor = _simple("vm-pause-on-hypervisor", "pause", "resume")
ResumeOnHypervisor = _simple("vm-resume-on-hypervisor", "resume", "pause")

CHAINS: dict[str, list[type[Flow]]] = {
    "vm-start": [StartAllocateHost, BeforeStart, StartOnHypervisor, AfterStart],
    "vm-stop": [StopOnHypervisor, StopReleaseHost, AfterStop],
    "vm-reboot": [RebootOnHypervisor],
    "vm-pause": [PauseOnHypervisor],
    "vm-resume": [ResumeOnHypervisor],
}
