"""The ``vm-migrate`` chain: reserve on the target, move, switch the VM's host, hooks.

``ctx.data``: ``vmUuid``, ``sourceHostUuid``, optionally ``targetHostUuid`` (asked for or
chosen by the first step).
"""

from __future__ import annotations

from typing import Any

from zmn.core.flow import Flow, FlowContext
from zmn.core.service import send
from zmn.core.vmhooks import VmAfterMigrate
from zmn.services.vm.common import hypervisor, load_vm, quietly, set_fields


class MigrateAllocateHost(Flow):
    """Reserve room on another host of the VM's cluster that reaches its networks and storage."""

    name = "vm-migrate-allocate-host"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        vm = load_vm(ctx.call, d["vmUuid"])
        host = (
            await send(
                ctx.call,
                "AllocateHost",
                cpuNum=vm["cpuNum"],
                memorySize=vm["memorySize"],
                clusterUuid=vm["clusterUuid"],
                hostUuid=d.get("targetHostUuid"),
                avoidHostUuids=[d["sourceHostUuid"]],
                l3NetworkUuids=[n["l3NetworkUuid"] for n in vm["vmNics"]],
                primaryStorageUuids=sorted(
                    {v["primaryStorageUuid"] for v in vm["allVolumes"] if v["primaryStorageUuid"]}
                ),
                strategy=vm["allocatorStrategy"],
                reservationKey=ctx.reservation_key(self.name),
            )
        )["host"]
        d["targetHostUuid"] = host["uuid"]
        d["targetReserved"] = True

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        reserved = d.pop("targetReserved", None)
        key = ctx.reservation_key(self.name)
        if key is not None:  # exactly once, also when the record missed the reservation
            await send(ctx.call, "ReleaseHostCapacity", reservationKey=key)
        elif reserved:
            vm = load_vm(ctx.call, d["vmUuid"])
            await send(
                ctx.call,
                "ReleaseHostCapacity",
                hostUuid=d["targetHostUuid"],
                cpuNum=vm["cpuNum"],
                memorySize=vm["memorySize"],
            )


class MigrateOnHypervisor(Flow):
    name = "vm-migrate-on-hypervisor"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        vm = load_vm(ctx.call, d["vmUuid"])
        await hypervisor(
            ctx.call, d["sourceHostUuid"], "migrate", vm, targetHostUuid=d["targetHostUuid"]
        )
        d["migrated"] = True

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        vm = load_vm(ctx.call, d["vmUuid"])
        if not d.pop("migrated", None) and not await self._on_target(ctx, vm):
            return  # the migration failed (or never began): the VM is where it was
        await quietly(
            f"migrating VM {vm['uuid']} back",
            hypervisor(
                ctx.call, d["targetHostUuid"], "migrate", vm, targetHostUuid=d["sourceHostUuid"]
            ),
        )

    async def _on_target(self, ctx: FlowContext, vm: dict[str, Any]) -> bool:
        """Whether the domain runs on the target although the run did not record it: the
        node died while the hypervisor migrated (crash recovery undoes this step then), or
        the answer was lost. Asked of the target; when it cannot tell, the VM is taken to be
        where the record says (the reconciler settles it once the host answers)."""
        if not ctx.data.get("targetHostUuid"):
            return False
        located = await quietly(
            f"locating VM {vm['uuid']} on the migration target",
            hypervisor(ctx.call, ctx.data["targetHostUuid"], "locate", vm),
        )
        return bool(located and (located.get("result") or {}).get("present"))


class MigrateSwitchHost(Flow):
    """The VM now runs on the target: the source gets its capacity back."""

    name = "vm-migrate-switch-host"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        vm = load_vm(ctx.call, d["vmUuid"])
        await send(
            ctx.call,
            "ReleaseHostCapacity",
            hostUuid=d["sourceHostUuid"],
            cpuNum=vm["cpuNum"],
            memorySize=vm["memorySize"],
        )
        d["previousLastHostUuid"] = vm["lastHostUuid"]
        set_fields(
            ctx.call, d["vmUuid"], hostUuid=d["targetHostUuid"], lastHostUuid=d["sourceHostUuid"]
        )
        d["switched"] = True

    async def rollback(self, ctx: FlowContext) -> None:
        d = ctx.data
        if not d.pop("switched", None):
            return
        vm = load_vm(ctx.call, d["vmUuid"])
        await send(
            ctx.call,
            "ReserveHostCapacity",
            hostUuid=d["sourceHostUuid"],
            cpuNum=vm["cpuNum"],
            memorySize=vm["memorySize"],
        )
        set_fields(
            ctx.call,
            d["vmUuid"],
            hostUuid=d["sourceHostUuid"],
            lastHostUuid=d.get("previousLastHostUuid"),
        )


class AfterMigrate(Flow):
    name = "vm-after-migrate"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        vm = load_vm(ctx.call, d["vmUuid"])
        for impl in ctx.call.node.extensions.all(VmAfterMigrate):  # type: ignore[type-abstract]
            await impl.after_vm_migrate(vm, d["sourceHostUuid"], d["targetHostUuid"])


VM_MIGRATE_CHAIN = "vm-migrate"
VM_MIGRATE_FLOWS: list[type[Flow]] = [
    MigrateAllocateHost,
    MigrateOnHypervisor,
    MigrateSwitchHost,
    AfterMigrate,
]
