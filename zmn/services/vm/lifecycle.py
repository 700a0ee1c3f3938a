"""VM life-cycle handlers: create, start, stop, reboot, pause, resume, migrate, destroy,
recover, expunge.

Every operation on a VM holds the VM's task-queue slot (``vm:<uuid>``, level 1), so two
operations on one VM run one after the other in arrival order. Inside it the state table is
checked, the VM moves to the transitional state, the operation's flow chain runs, and the VM
moves to the final state, or back to the state it left when the chain failed (after the chain
rolled its work back).
"""

from __future__ import annotations

import logging
from typing import Any

from zmn.api.errors import InvalidArgument
from zmn.core import crud
from zmn.core.flow import FlowContext
from zmn.core.service import Call, handler
from zmn.services.vm.api import (
    CreateVmInstance,
    DeleteVmInstance,
    DestroyVmInstance,
    ExpungeVmInstance,
    MigrateVm,
    PauseVmInstance,
    RebootVmInstance,
    RecoverVmInstance,
    ResumeVmInstance,
    StartVmInstance,
    StopVmInstance,
)
from zmn.services.vm.common import VmBase, check_op, load_vm, set_state
from zmn.services.vm.plan import plan_create
from zmn.services.vm.states import BACK, VM_STATE

log = logging.getLogger("zmn.vm")


class LifecycleHandlers(VmBase):
    async def run_chain(
        self, call: Call, chain: str, data: dict[str, Any], **scratch: Any
    ) -> dict[str, Any]:
        ctx = FlowContext(call, data=data, scratch=dict(scratch))
        return await self.node.flows.chain(chain).run(ctx)

    async def operate(
        self,
        call: Call,
        uuid: str,
        *,
        operation: str,
        event: str,
        chain: str | None,
        done: str,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check, go transitional, run ``chain``, go to ``done`` (or back) — all in the slot."""
        vm = check_op(call, uuid, operation)
        old = vm["state"]
        await set_state(call, uuid, event)
        d = {"vmUuid": uuid, "hostUuid": vm["hostUuid"], "from": old, **(data or {})}
        if chain is not None:
            try:
                await self.run_chain(call, chain, d)
            except BaseException:
                await self.back(call, uuid, BACK[old])
                raise
        return await set_state(call, uuid, done)

    async def back(self, call: Call, uuid: str, event: str) -> None:
        """After a failed chain: the state the VM left (never masking the chain's error)."""
        try:
            await set_state(call, uuid, event)
        except Exception:
            log.exception("could not put VM %s back with event %s", uuid, event)

    # ----------------------------------------------------------------- create

    @handler(CreateVmInstance)
    async def create_vm(self, msg: CreateVmInstance, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "VmInstance", msg)
        if existing is not None:
            return {"inventory": existing}
        data = plan_create(call, msg)
        uuid = data["vmUuid"]
        async with self.vm_slot(uuid, "CreateVmInstance"):
            existing = crud.existing_inventory(call, "VmInstance", msg)
            if existing is not None:  # a twin with the same resourceUuid finished first
                return {"inventory": existing}
            cloud_init = data.pop("cloudInit", None)  # not persisted with the flow record
            await self.run_chain(call, "vm-create", data, msg=msg, cloudInit=cloud_init)
            if data["strategy"] == "InstantStart":
                inv = await set_state(call, uuid, "running", lastHostUuid=data["hostUuid"])
            else:
                inv = await set_state(call, uuid, "stopped")
        await call.publish("/vm/created", {"resourceType": "VmInstance", "inventory": inv})
        return {"inventory": inv}

    # ----------------------------------------------------------------- power

    @handler(StartVmInstance)
    async def start_vm(self, msg: StartVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "StartVmInstance"):
            data = {"clusterUuid": msg.clusterUuid, "targetHostUuid": msg.hostUuid}
            return {"inventory": await self._start(call, msg.uuid, data)}

    async def _start(self, call: Call, uuid: str, data: dict[str, Any]) -> dict[str, Any]:
        vm = check_op(call, uuid, "start")
        old = vm["state"]
        await set_state(call, uuid, "start")
        d = {"vmUuid": uuid, "from": old, "hostUuid": data.get("targetHostUuid"), **data}
        try:
            await self.run_chain(call, "vm-start", d)
        except BaseException:
            await self.back(call, uuid, BACK[old])
            raise
        return await set_state(call, uuid, "running", lastHostUuid=d["hostUuid"])

    @handler(StopVmInstance)
    async def stop_vm(self, msg: StopVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "StopVmInstance"):
            inv = await self.operate(
                call,
                msg.uuid,
                operation="stop",
                event="stop",
                chain="vm-stop",
                done="stopped",
                data={"type": msg.type},
            )
        return {"inventory": inv}

    @handler(RebootVmInstance)
    async def reboot_vm(self, msg: RebootVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "RebootVmInstance"):
            inv = await self.operate(
                call,
                msg.uuid,
                operation="reboot",
                event="reboot",
                chain="vm-reboot",
                done="running",
            )
        return {"inventory": inv}

    @handler(PauseVmInstance)
    async def pause_vm(self, msg: PauseVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "PauseVmInstance"):
            inv = await self.operate(
                call, msg.uuid, operation="pause", event="pause", chain="vm-pause", done="paused"
            )
        return {"inventory": inv}

    @handler(ResumeVmInstance)
    async def resume_vm(self, msg: ResumeVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "ResumeVmInstance"):
            inv = await self.operate(
                call,
                msg.uuid,
                operation="resume",
                event="resume",
                chain="vm-resume",
                done="running",
            )
        return {"inventory": inv}

    # ----------------------------------------------------------------- migrate

    @handler(MigrateVm)
    async def migrate_vm(self, msg: MigrateVm, call: Call) -> dict[str, Any]:
        uuid = msg.vmInstanceUuid
        async with self.vm_slot(uuid, "MigrateVm"):
            vm = check_op(call, uuid, "migrate")
            if msg.hostUuid is not None:
                self._check_target(call, vm, msg.hostUuid)
            inv = await self.operate(
                call,
                uuid,
                operation="migrate",
                event="migrate",
                chain="vm-migrate",
                done="running",
                data={"sourceHostUuid": vm["hostUuid"], "targetHostUuid": msg.hostUuid},
            )
        return {"inventory": inv}

    def _check_target(self, call: Call, vm: dict[str, Any], host_uuid: str) -> None:
        if host_uuid == vm["hostUuid"]:
            raise InvalidArgument(
                f"hostUuid: VM {vm['name']} already runs on host {host_uuid}",
                code="VM_INSTANCE.SAME_HOST",
                field="hostUuid",
            )
        with call.tx() as s:
            host = crud.get_row(s, self.node.resources.get("Host"), host_uuid, "hostUuid")
            cluster = host.clusterUuid
        if cluster != vm["clusterUuid"]:
            raise InvalidArgument(
                f"hostUuid: host {host_uuid} is in cluster {cluster}; VM {vm['name']} migrates"
                f" only within its cluster {vm['clusterUuid']}",
                code="VM_INSTANCE.MIGRATE_OTHER_CLUSTER",
                field="hostUuid",
            )

    # ----------------------------------------------------------------- destroy, recover, expunge

    def deletion_policy(self) -> str:
        return str(self.node.global_config.get("vm", "deletionPolicy"))

    @handler(DestroyVmInstance)
    async def destroy_vm(self, msg: DestroyVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "DestroyVmInstance"):
            inv = await self._destroy(call, msg.uuid)
            if self.deletion_policy() == "Direct":
                await self._expunge(call, msg.uuid)
                return {}
        return {"inventory": inv}

    async def _destroy(self, call: Call, uuid: str) -> dict[str, Any]:
        return await self.operate(
            call, uuid, operation="destroy", event="destroy", chain="vm-destroy", done="destroyed"
        )

    @handler(RecoverVmInstance)
    async def recover_vm(self, msg: RecoverVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "RecoverVmInstance"):
            inv = await self.operate(
                call, msg.uuid, operation="recover", event="recover", chain=None, done="stopped"
            )
        return {"inventory": inv}

    @handler(ExpungeVmInstance)
    async def expunge_vm(self, msg: ExpungeVmInstance, call: Call) -> dict[str, Any]:
        async with self.vm_slot(msg.uuid, "ExpungeVmInstance"):
            await self._expunge(call, msg.uuid)
        return {}

    async def _expunge(self, call: Call, uuid: str) -> None:
        vm = check_op(call, uuid, "expunge")
        await set_state(call, uuid, "expunge")
        try:
            await self.run_chain(call, "vm-expunge", {"vmUuid": uuid, "from": vm["state"]})
        except BaseException:
            await self.back(call, uuid, "destroyed")
            raise
        vm["state"] = "Expunged"
        await call.publish("/vm/deleted", {"resourceType": "VmInstance", "inventory": vm})

    @handler(DeleteVmInstance)
    async def delete_vm(self, msg: DeleteVmInstance, call: Call) -> dict[str, Any]:
        """Cascade from a zone, cluster or host delete: destroy (whatever the policy), expunge."""
        async with self.vm_slot(msg.uuid, "DeleteVmInstance"):
            state = load_vm(call, msg.uuid)["state"]
            if state != "Destroyed":
                VM_STATE.check(msg.uuid, state, "destroy")
                await self._destroy(call, msg.uuid)
            await self._expunge(call, msg.uuid)
        return {}
