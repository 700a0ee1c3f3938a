"""Helpers the VM flows and handlers share: inventories, state changes, messages to other
services (by API name, never by importing them), extension-point calls."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from zmn.api.errors import ZmnError
from zmn.core import crud
from zmn.core.db import utcnow
from zmn.services.vm.models import VmInstanceVO, VmNicVO
from zmn.services.vm.states import VM_STATE

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node
    from zmn.core.service import Call

log = logging.getLogger("zmn.vm")
T = TypeVar("T")


class VmBase:
    """What every VM handler mixin has: the node and the VM's task-queue slot."""

    node: Node

    @asynccontextmanager
    async def vm_slot(self, uuid: str, task: str) -> AsyncIterator[None]:
        """Operations on one VM run one at a time, in arrival order (queue ``vm:<uuid>``)."""
        async with self.node.queues.slot(f"vm:{uuid}", 1, task):
            yield


def attach_children(node: Node, session: Session, invs: list[dict[str, Any]]) -> None:
    """Embed ``vmNics`` and ``allVolumes`` in VM inventories: one query each per page."""
    uuids = [inv["uuid"] for inv in invs]
    nic_rt = node.resources.get("VmNic")
    nics: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    rows = list(
        session.scalars(
            select(VmNicVO).where(VmNicVO.vmInstanceUuid.in_(uuids)).order_by(VmNicVO.deviceId)
        )
    )
    for nic in nic_rt.inventories(session, rows):
        nics[nic["vmInstanceUuid"]].append(nic)
    volumes: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    vol_rt = node.resources.types.get("Volume")
    if vol_rt is not None:
        model = vol_rt.model
        vrows = list(
            session.scalars(
                select(model)
                .where(model.vmInstanceUuid.in_(uuids))
                .order_by(model.deviceId, model.createDate)
            )
        )
        for vol in vol_rt.inventories(session, vrows):
            volumes[vol["vmInstanceUuid"]].append(vol)
    for inv in invs:
        inv["vmNics"] = nics[inv["uuid"]]
        inv["allVolumes"] = volumes[inv["uuid"]]


def vm_row(session: Session, node: Node, uuid: str, field: str = "uuid") -> VmInstanceVO:
    row: VmInstanceVO = crud.get_row(session, node.resources.get("VmInstance"), uuid, field)
    return row


def load_vm(call: Call, uuid: str, field: str = "uuid") -> dict[str, Any]:
    """The VM's full inventory (with NICs and volumes)."""
    rt = call.node.resources.get("VmInstance")
    with call.tx() as s:
        return rt.inventories(s, [vm_row(s, call.node, uuid, field)])[0]


def check_op(call: Call, uuid: str, operation: str, field: str = "uuid") -> dict[str, Any]:
    """The VM's inventory, or InvalidState naming its state when it cannot do ``operation``."""
    vm = load_vm(call, uuid, field)
    VM_STATE.check(uuid, vm["state"], operation)
    return vm


async def set_state(call: Call, uuid: str, event: str, **fields: Any) -> dict[str, Any]:
    """Apply a state event (and field changes) in one transaction; publish the change."""
    rt = call.node.resources.get("VmInstance")
    with call.tx() as s:
        row = vm_row(s, call.node, uuid)
        old = row.state
        row.state = VM_STATE.next(uuid, old, event)
        for key, value in fields.items():
            setattr(row, key, value)
        row.lastOpDate = utcnow()
        s.flush()
        inv = rt.inventories(s, [row])[0]
    if old != inv["state"]:
        await crud.publish_state_change(call, rt, inv, old, inv["state"])
    return inv


def set_fields(call: Call, uuid: str, **fields: Any) -> None:
    with call.tx() as s:
        row = s.get(VmInstanceVO, uuid)
        if row is not None:
            for key, value in fields.items():
                setattr(row, key, value)
            row.lastOpDate = utcnow()


async def send(call: Call, api_name: str, **args: Any) -> Any:
    """Send another service's API or internal message by name."""
    cls: Any = call.node.apis.get(api_name)
    return await call.call(cls(**args))


async def hypervisor(call: Call, host_uuid: str, op: str, vm: dict[str, Any], **args: Any) -> Any:
    return await send(call, "HypervisorOp", hostUuid=host_uuid, op=op, vm=vm, args=args)


async def quietly(what: str, work: Awaitable[T]) -> T | None:
    """Run an undo step, logging (not raising) its failure so the other undo steps still run."""
    try:
        return await work
    except (ZmnError, Exception):
        log.warning("%s failed", what, exc_info=True)
        return None


async def each_hook(node: Node, point: type[Any], call: Callable[[Any], Awaitable[None]]) -> None:
    for impl in node.extensions.all(point):
        await call(impl)


def host_status(call: Call, host_uuid: str) -> str | None:
    rt = call.node.resources.types.get("Host")
    if rt is None:
        return None
    with call.tx() as s:
        row = s.get(rt.model, host_uuid)
        return None if row is None else str(row.status)
