"""After a crash: roll back the VM chains this node was running, and settle stranded VMs.

The flow record of each chain run holds its data and the steps that finished. At start the
VM service rolls back, in reverse, every step of every VM chain this node left Running or
RollingBack (the step in progress too: each undo only undoes what its run recorded), then
puts the VM in the state the failed operation would have left it in. A VM still in a
transitional state with no running job anywhere (the node died between two steps of a
handler) becomes Unknown when it holds a host, Stopped otherwise, Error if never created.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.core import crud
from zmn.core.db import utcnow
from zmn.core.flow import FlowContext
from zmn.core.models import FlowRecordVO, JobVO
from zmn.core.service import Call
from zmn.services.vm.models import VmInstanceVO
from zmn.services.vm.states import TRANSITIONAL

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.vm.recovery")

VM_CHAINS = (
    "vm-create",
    "vm-start",
    "vm-stop",
    "vm-reboot",
    "vm-pause",
    "vm-resume",
    "vm-migrate",
    "vm-destroy",
    "vm-expunge",
)
# the state a VM goes back to when its chain is rolled back after a crash
AFTER = {"vm-start": "Stopped", "vm-expunge": "Destroyed", "vm-create": "Error"}


async def recover(node: Node) -> int:
    """Roll back interrupted VM chains of this node, settle stranded VMs; returns how many."""
    call = Call(node, node.admin_principal(), "RecoverInterruptedVmOperations")
    with node.db.tx() as s:
        records = list(
            s.scalars(
                select(FlowRecordVO).where(
                    FlowRecordVO.chain.in_(VM_CHAINS),
                    FlowRecordVO.state.in_(("Running", "RollingBack")),
                    FlowRecordVO.managementNodeUuid == node.uuid,
                )
            )
        )
    settled = 0
    for rec in records:
        data: dict[str, Any] = json.loads(rec.data or "{}")
        steps: list[str] = json.loads(rec.doneFlows or "[]")
        if rec.currentFlow and rec.currentFlow not in steps:
            steps.append(rec.currentFlow)
        ctx = FlowContext(call, data=data, chain=rec.chain, record_uuid=rec.uuid)
        for name in reversed(steps):
            flow_cls = node.flows.flows.get(name)
            if flow_cls is None:
                continue
            try:
                await flow_cls().rollback(ctx)
            except Exception:
                log.exception("rolling back %s/%s after a restart failed", rec.chain, name)
        node.db_write(
            update(FlowRecordVO)
            .where(FlowRecordVO.uuid == rec.uuid)
            .values(state="RolledBack", currentFlow=None, error="interrupted: the node stopped")
        )
        uuid = data.get("vmUuid")
        if uuid:
            back = AFTER.get(rec.chain) or data.get("from") or "Unknown"
            settled += await _settle(call, uuid, back)
    return settled + await _stranded(call)


async def _settle(call: Call, uuid: str, state: str) -> int:
    rt = call.node.resources.get("VmInstance")
    with call.tx() as s:
        row = s.get(VmInstanceVO, uuid)
        if row is None or row.state not in TRANSITIONAL:
            return 0
        old = row.state
        if state in ("Stopped", "Destroyed", "Error"):
            row.hostUuid = None
        row.state = state
        row.lastOpDate = utcnow()
        s.flush()
        inv = rt.inventories(s, [row])[0]
    await crud.publish_state_change(call, rt, inv, old, state)
    log.warning("VM %s was %s when the node stopped; it is now %s", uuid, old, state)
    return 1


async def _stranded(call: Call) -> int:
    with call.tx() as s:
        busy = set(
            s.scalars(
                select(JobVO.resourceUuid).where(
                    JobVO.state == "Running", JobVO.resourceUuid.is_not(None)
                )
            )
        )
        rows = list(
            s.execute(
                select(VmInstanceVO.uuid, VmInstanceVO.state, VmInstanceVO.hostUuid).where(
                    VmInstanceVO.state.in_(TRANSITIONAL)
                )
            )
        )
    count = 0
    for uuid, state, host in rows:
        if uuid in busy:
            continue
        target = (
            "Error"
            if state == "Created"
            else "Destroyed"
            if state == "Expunging"
            else ("Unknown" if host else "Stopped")
        )
        count += await _settle(call, uuid, target)
    return count
