"""Helpers the VM flows and handlers share: inventories, state changes, messages to other
services (by API name, never by importing them), extension-point calls."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Table, bindparam, select, update

from zmn.api.errors import ZmnError, not_found
from zmn.core import crud
from zmn.core.db import utcnow
from zmn.core.service import send
from zmn.services.vm.limits import start_limits
from zmn.services.vm.models import VmInstanceVO, VmNicVO
from zmn.services.vm.states import VM_STATE

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.fastsql import FastConnection
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
        async with self.node.queues.vm(uuid, task):
            yield


def attach_children(node: Node, session: Session, invs: list[dict[str, Any]]) -> None:
    """Embed ``vmNics`` and ``allVolumes`` in VM inventories: one query each per page."""
    uuids = [inv["uuid"] for inv in invs]
    nic_rt = node.resources.get("VmNic")
    nics: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    # prepared statements, rows without ORM objects: most of a get-by-UUID's cost otherwise
    rows = nic_rt.rows_where(session, "vmInstanceUuid", uuids, ("deviceId",))
    for nic in nic_rt.inventories(session, rows):
        nics[nic["vmInstanceUuid"]].append(nic)
    volumes: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    vol_rt = node.resources.types.get("Volume")
    if vol_rt is not None:
        vrows = vol_rt.rows_where(session, "vmInstanceUuid", uuids, ("deviceId", "createDate"))
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
    if _fast_inventories(call.node):
        with call.node.db.fast() as conn:
            row = conn.execute(_SELECT_VM, {"uuid": uuid}).first()
            if row is None:
                raise not_found(rt.name, uuid, field)
            return vm_inventory(call.node, conn, row)
    with call.tx() as s:
        return rt.inventories(s, [vm_row(s, call.node, uuid, field)])[0]


# The create/operate path builds a VM's inventory with cached Core statements (no ORM
# objects, no session): the same dict ``ResourceType.inventories`` + ``attach_children`` make.
_VM = cast(Table, VmInstanceVO.__table__)
_NIC = cast(Table, VmNicVO.__table__)
_SELECT_VM = select(_VM).where(_VM.c.uuid == bindparam("uuid"))
_SELECT_NICS = (
    select(_NIC).where(_NIC.c.vmInstanceUuid == bindparam("uuid")).order_by(_NIC.c.deviceId)
)
_statements: dict[Any, Any] = {}


def _fast_inventories(node: Node) -> bool:
    """Whether the Core path gives the same inventory: no other hooks on the types involved."""
    hook = node.resources.get("VmInstance").inventory_hook
    if not (isinstance(hook, partial) and hook.func is attach_children):
        return False
    vol_rt = node.resources.types.get("Volume")
    nic_rt = node.resources.get("VmNic")
    return nic_rt.inventory_hook is None and (vol_rt is None or vol_rt.inventory_hook is None)


def _volumes_statement(model: Any) -> Any:
    stmt = _statements.get(model)
    if stmt is None:
        t = model.__table__
        stmt = _statements[model] = (
            select(t)
            .where(t.c.vmInstanceUuid == bindparam("uuid"))
            .order_by(t.c.deviceId, t.c.createDate)
        )
    return stmt


def _update_statement(columns: tuple[str, ...]) -> Any:
    stmt = _statements.get(columns)
    if stmt is None:
        stmt = _statements[columns] = (
            update(_VM)
            .where(_VM.c.uuid == bindparam("_uuid"))
            .values({c: bindparam(c) for c in columns})
        )
    return stmt


def vm_inventory(node: Node, conn: FastConnection, row: Any) -> dict[str, Any]:
    """One VM's inventory with ``vmNics`` and ``allVolumes``, read in a fast-path transaction."""
    inv = node.resources.get("VmInstance").inventory(row)
    nic_rt = node.resources.get("VmNic")
    inv["vmNics"] = [nic_rt.inventory(r) for r in conn.execute(_SELECT_NICS, {"uuid": row.uuid})]
    vol_rt = node.resources.types.get("Volume")
    inv["allVolumes"] = (
        []
        if vol_rt is None
        else [
            vol_rt.inventory(r)
            for r in conn.execute(_volumes_statement(vol_rt.model), {"uuid": row.uuid})
        ]
    )
    return inv


def check_op(call: Call, uuid: str, operation: str, field: str = "uuid") -> dict[str, Any]:
    """The VM's inventory, or InvalidState naming its state when it cannot do ``operation``."""
    vm = load_vm(call, uuid, field)
    VM_STATE.check(uuid, vm["state"], operation)
    return vm


async def set_state(call: Call, uuid: str, event: str, **fields: Any) -> dict[str, Any]:
    """Apply a state event (and field changes) in one transaction; publish the change."""
    rt = call.node.resources.get("VmInstance")
    if _fast_inventories(call.node):
        with call.node.db.fast() as conn:
            found = conn.execute(_SELECT_VM, {"uuid": uuid}).first()
            if found is None:
                raise not_found(rt.name, uuid, "uuid")
            old = found.state
            values = {"state": VM_STATE.next(uuid, old, event), **fields, "lastOpDate": utcnow()}
            conn.execute(_update_statement(tuple(values)), {"_uuid": uuid, **values})
            inv = vm_inventory(call.node, conn, SimpleNamespace(**{**found._mapping, **values}))
        if old != inv["state"]:
            await crud.publish_state_change(call, rt, inv, old, inv["state"])
        return inv
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
    """Change columns of the VM row (no state change, no event): one Core UPDATE."""
    values = {**fields, "lastOpDate": utcnow()}
    with call.node.db.fast() as conn:
        conn.execute(_update_statement(tuple(values)), {"_uuid": uuid, **values})


async def hypervisor(call: Call, host_uuid: str, op: str, vm: dict[str, Any], **args: Any) -> Any:
    if op == "start":  # every start fixes the VM's hot-add limits from the global config
        args = {**start_limits(call.node, vm), **args}
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
