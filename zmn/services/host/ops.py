"""Host operations shared by the add chain, ``ReconnectHost`` and the ping tracker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import case, select, update

from zmn.api.errors import OperationFailed, ZmnError
from zmn.core import crud
from zmn.core.db import utcnow
from zmn.core.models import TagVO
from zmn.core.tags import TagPattern
from zmn.services.host.hosttype import HostRef, HostType
from zmn.services.host.models import HostVO
from zmn.services.host.placed import placed_vms
from zmn.services.host.simulator import SimulatorHostType
from zmn.services.host.states import HOST_STATUS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.service import Call

RESERVED_MEMORY = TagPattern(
    "reservedMemory::{size}",
    "Host",
    "memory in bytes kept for the host itself, never given to VMs",
    validator=lambda t: None if t["size"].isdigit() else "size must be a number of bytes",
)


def host_ref(row: HostVO) -> HostRef:
    return HostRef(
        uuid=row.uuid,
        name=row.name,
        managementIp=row.managementIp,
        clusterUuid=row.clusterUuid,
        hypervisorType=row.hypervisorType,
        totalCpuCapacity=row.totalCpuCapacity,
        totalMemoryCapacity=row.totalMemoryCapacity,
    )


def load_ref(call: Call, uuid: str) -> HostRef:
    with call.tx() as s:
        return host_ref(crud.get_row(s, call.node.resources.get("Host"), uuid))


async def set_status(call: Call, uuid: str, event: str) -> str:
    """Apply a connection event; publish ``/host/status/change`` when the status changes."""
    return str(
        (await crud.change_state(call, "Host", uuid, event, HOST_STATUS, field="status"))[
            "inventory"
        ]["status"]
    )


def reserved_memory(session: Session, uuid: str) -> int:
    tags = session.scalars(
        select(TagVO.tag).where(
            TagVO.resourceUuid == uuid, TagVO.type == "System", TagVO.tag.like("reservedMemory::%")
        )
    )
    total = 0
    for tag in tags:
        tokens = RESERVED_MEMORY.match(tag)
        if tokens and tokens["size"].isdigit():
            total = max(total, int(tokens["size"]))
    return total


async def sync_capacity(call: Call, host_type: HostType, ref: HostRef) -> dict[str, Any]:
    """Take the host's totals from the hypervisor and keep what the database says is used."""
    facts = await host_type.facts(ref)
    rt = call.node.resources.get("Host")
    with call.tx() as s:
        crud.get_row(s, rt, ref.uuid)  # NotFound when it is gone
        reserved = reserved_memory(s, ref.uuid)
        # One atomic UPDATE that keeps what is placed (total - available, without the reserved
        # memory), also when allocations on other nodes commit meanwhile: a read-modify-write
        # of the row lost them (a host reconnected under load, e.g. at a takeover, forgot
        # reservations). Negative when more is placed than the host has (over-provisioning, a
        # smaller host): available stays total - placed, as CheckConsistency holds it.
        used_cpu = HostVO.totalCpuCapacity - HostVO.availableCpuCapacity
        used_memory = HostVO.totalMemoryCapacity - HostVO.availableMemoryCapacity - reserved
        s.execute(
            update(HostVO)
            .where(HostVO.uuid == ref.uuid)
            # MySQL assigns left to right with the new values: available before the totals
            .ordered_values(
                (
                    HostVO.availableCpuCapacity,
                    facts.cpuCapacity - case((used_cpu > 0, used_cpu), else_=0),
                ),
                (
                    HostVO.availableMemoryCapacity,
                    facts.memoryCapacity - reserved - case((used_memory > 0, used_memory), else_=0),
                ),
                (HostVO.cpuNum, facts.cpuNum),
                (HostVO.totalCpuCapacity, facts.cpuCapacity),
                (HostVO.totalMemoryCapacity, facts.memoryCapacity),
                (HostVO.lastOpDate, utcnow()),
            )
            .execution_options(synchronize_session=False)
        )
        s.expire_all()
        row: HostVO = crud.get_row(s, rt, ref.uuid)
        return rt.inventories(s, [row])[0]


async def connect(call: Call, host_type: HostType, ref: HostRef, params: dict[str, Any]) -> None:
    """Connect through the host type; any failure becomes ``HOST.CONNECT_FAILED``."""
    try:
        await host_type.connect(ref, params)
    except ZmnError as exc:
        raise OperationFailed(
            f"cannot connect to host {ref.name} ({ref.managementIp}): {exc.message}",
            code="HOST.CONNECT_FAILED",
            field="managementIp",
            cause=exc.code,
        ) from exc
    except Exception as exc:
        raise OperationFailed(
            f"cannot connect to host {ref.name} ({ref.managementIp}): {type(exc).__name__}: {exc}",
            code="HOST.CONNECT_FAILED",
            field="managementIp",
        ) from exc


async def reconnect(call: Call, host_type: HostType, ref: HostRef) -> None:
    """Connecting -> connect -> sync capacity -> Connected, or Disconnected and the error."""
    await set_status(call, ref.uuid, "connect")
    try:
        await connect(call, host_type, ref, {})
        if isinstance(host_type, SimulatorHostType):
            with call.tx() as s:
                host_type.adopt(ref.uuid, placed_vms(call.node, s, ref.uuid))
        await sync_capacity(call, host_type, ref)
    except Exception:
        await set_status(call, ref.uuid, "disconnected")
        raise
    await set_status(call, ref.uuid, "connected")
