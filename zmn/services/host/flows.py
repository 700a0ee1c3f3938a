"""The ``host-add`` chain: record the host, connect to it, take its capacity.

Each step undoes itself on failure: a host that cannot be reached leaves no row, tag or
simulator record behind. ``ctx.data`` (persisted) holds the host's fields; ``ctx.scratch``
holds the API message, type-specific parameters (which may carry secrets) and the host types.

A node that died during an add settles it at its next start (:func:`recover`, before the
tracker reconnects hosts): an add whose every step was done is finished (the job succeeds,
the host is reconnected like every other at boot); any other is rolled back, so no host row
stays Connecting. The connection parameters are not persisted (they may carry secrets), so
an add cut short cannot be carried on; the client adds the host again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from zmn.api.errors import Conflict
from zmn.core import crud
from zmn.core.flow import Flow, FlowContext
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.recovery import ChainRecovery, Recovered, recover_chains
from zmn.services.host.hosttype import HostRef, HostType, HostTypeRegistry
from zmn.services.host.models import HostVO
from zmn.services.host.ops import connect, set_status, sync_capacity

if TYPE_CHECKING:
    from zmn.core.node import Node


def _ref(ctx: FlowContext) -> HostRef:
    d = ctx.data
    return HostRef(
        d["hostUuid"], d["name"], d["managementIp"], d["clusterUuid"], d["hypervisorType"]
    )


def _type(ctx: FlowContext) -> HostType:
    types: HostTypeRegistry = ctx.scratch["types"]
    return types.get(ctx.data["hypervisorType"])


def check_unique_ip(session: Any, ip: str, exclude: str | None = None) -> None:
    clauses = [HostVO.managementIp == ip]
    if exclude:
        clauses.append(HostVO.uuid != exclude)
    if session.scalar(select(func.count()).select_from(HostVO).where(*clauses)):
        raise Conflict(
            f"managementIp: a host with management IP {ip} already exists",
            code="HOST.DUPLICATE_IP",
            field="managementIp",
        )


class RecordHost(Flow):
    name = "host-record"

    async def run(self, ctx: FlowContext) -> None:
        d = ctx.data
        rt = ctx.call.node.resources.get("Host")
        with ctx.call.tx() as s:
            check_unique_ip(s, d["managementIp"])
            crud.unique_name(s, rt, d["name"])
            row = HostVO(
                uuid=d["hostUuid"],
                name=d["name"],
                zoneUuid=d["zoneUuid"],
                clusterUuid=d["clusterUuid"],
                hypervisorType=d["hypervisorType"],
                managementIp=d["managementIp"],
                state="Enabled",
                status="Connecting",
            )
            crud.insert(ctx.call, s, "Host", row, ctx.scratch.get("msg"))

    async def rollback(self, ctx: FlowContext) -> None:
        uuid = ctx.data["hostUuid"]
        with ctx.call.tx() as s:
            s.execute(delete(TagVO).where(TagVO.resourceUuid == uuid))
            s.execute(delete(AccountResourceRefVO).where(AccountResourceRefVO.resourceUuid == uuid))
            s.execute(delete(HostVO).where(HostVO.uuid == uuid))


class ConnectHost(Flow):
    name = "host-connect"

    async def run(self, ctx: FlowContext) -> None:
        await connect(ctx.call, _type(ctx), _ref(ctx), ctx.scratch.get("params", {}))
        await set_status(ctx.call, ctx.data["hostUuid"], "connected")

    async def rollback(self, ctx: FlowContext) -> None:
        await _type(ctx).disconnect(_ref(ctx))


class SyncHostCapacity(Flow):
    name = "host-sync-capacity"

    async def run(self, ctx: FlowContext) -> None:
        inv = await sync_capacity(ctx.call, _type(ctx), _ref(ctx))
        ctx.data["totalCpuCapacity"] = inv["totalCpuCapacity"]
        ctx.data["totalMemoryCapacity"] = inv["totalMemoryCapacity"]


HOST_ADD_CHAIN = "host-add"
HOST_ADD_FLOWS: list[type[Flow]] = [RecordHost, ConnectHost, SyncHostCapacity]


async def _finished(ctx: FlowContext) -> dict[str, Any]:
    rt = ctx.call.node.resources.get("Host")
    with ctx.call.tx() as s:
        inv = rt.inventories(s, [crud.get_row(s, rt, ctx.data["hostUuid"])])[0]
    await ctx.call.publish("/host/created", {"resourceType": "Host", "inventory": inv})
    return {"inventory": inv}


async def recover(
    node: Node, types: HostTypeRegistry, of_node: str | None = None
) -> list[Recovered]:
    """Finish or roll back the host adds a node (this one, or an evicted one) left open."""
    return await recover_chains(
        node,
        {HOST_ADD_CHAIN: ChainRecovery(finish=_finished)},
        of_node=of_node,
        scratch={"types": types},
        api="RecoverInterruptedHostAdds",
    )
