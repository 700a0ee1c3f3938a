"""L2 network handlers: create (no VLAN or VLAN), update, delete, attach to clusters."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from zmn.api.errors import Conflict, InvalidArgument
from zmn.core import crud, links
from zmn.core.resource import LinkSpec
from zmn.core.service import Call, handler
from zmn.services.network.api import (
    AttachL2NetworkToCluster,
    CreateL2NoVlanNetwork,
    CreateL2VlanNetwork,
    DeleteL2Network,
    DetachL2NetworkFromCluster,
    UpdateL2Network,
)
from zmn.services.network.models import L2NetworkClusterRefVO, L2NetworkVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

CLUSTER_LINK = LinkSpec(
    L2NetworkClusterRefVO, "L2Network", "l2NetworkUuid", "Cluster", "clusterUuid"
)

_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")


def check_interface(value: str) -> None:
    if not _INTERFACE.match(value):
        raise InvalidArgument(
            f"physicalInterface: {value!r} is not an interface name"
            " (1-15 letters, digits, _ . : @ -)",
            code="L2_NETWORK.INVALID_INTERFACE",
            field="physicalInterface",
        )


def check_vlan(vlan: int) -> None:
    if not 1 <= vlan <= 4094:
        raise InvalidArgument(
            f"vlan must be between 1 and 4094, got {vlan}",
            code="L2_NETWORK.INVALID_VLAN",
            field="vlan",
        )


def attached_clusters(session: Session, invs: list[dict[str, Any]]) -> None:
    for inv in invs:
        inv["attachedClusterUuids"] = links.linked_uuids(
            session, CLUSTER_LINK, "clusterUuid", "l2NetworkUuid", inv["uuid"]
        )


class L2Handlers:
    node: Node

    async def _create_l2(self, call: Call, msg: Any, kind: str, vlan: int | None) -> dict[str, Any]:
        check_interface(msg.physicalInterface)
        rt = self.node.resources.get("L2Network")

        def check(s: Session) -> None:
            crud.unique_name(s, rt, msg.name)
            if vlan is not None:
                same = (
                    select(func.count())
                    .select_from(L2NetworkVO)
                    .where(
                        L2NetworkVO.zoneUuid == msg.zoneUuid,
                        L2NetworkVO.physicalInterface == msg.physicalInterface,
                        L2NetworkVO.vlan == vlan,
                    )
                )
                if s.scalar(same):
                    raise Conflict(
                        f"vlan: the zone already has an L2 network on"
                        f" {msg.physicalInterface} VLAN {vlan}",
                        code="L2_NETWORK.DUPLICATE_VLAN",
                        field="vlan",
                    )

        row = L2NetworkVO(
            name=msg.name,
            zoneUuid=msg.zoneUuid,
            physicalInterface=msg.physicalInterface,
            type=kind,
            vlan=vlan,
        )
        return await crud.create(call, "L2Network", row, msg, check=check)

    @handler(CreateL2NoVlanNetwork)
    async def create_l2_novlan(self, msg: CreateL2NoVlanNetwork, call: Call) -> dict[str, Any]:
        return await self._create_l2(call, msg, "L2NoVlanNetwork", None)

    @handler(CreateL2VlanNetwork)
    async def create_l2_vlan(self, msg: CreateL2VlanNetwork, call: Call) -> dict[str, Any]:
        check_vlan(msg.vlan)
        return await self._create_l2(call, msg, "L2VlanNetwork", msg.vlan)

    @handler(UpdateL2Network)
    async def update_l2(self, msg: UpdateL2Network, call: Call) -> dict[str, Any]:
        links.check_rename(call, "L2Network", msg.uuid, msg.name)
        return await crud.update_fields(
            call, "L2Network", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(DeleteL2Network)
    async def delete_l2(self, msg: DeleteL2Network, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "L2Network", msg.uuid, cascade=msg.cascade)

    @handler(AttachL2NetworkToCluster)
    async def attach_l2(self, msg: AttachL2NetworkToCluster, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("L2Network")
        with call.tx() as s:
            l2 = crud.get_row(s, rt, msg.l2NetworkUuid, "l2NetworkUuid")
            cluster = links.row_of(call, s, "Cluster", msg.clusterUuid, "clusterUuid")
            links.same_zone(
                l2, "L2 network", cluster, "cluster", "clusterUuid", "L2_NETWORK.ZONE_MISMATCH"
            )
            clash = s.scalar(
                select(L2NetworkVO)
                .join(
                    L2NetworkClusterRefVO, L2NetworkClusterRefVO.l2NetworkUuid == L2NetworkVO.uuid
                )
                .where(
                    L2NetworkClusterRefVO.clusterUuid == cluster.uuid,
                    L2NetworkVO.uuid != l2.uuid,
                    L2NetworkVO.physicalInterface == l2.physicalInterface,
                    L2NetworkVO.vlan.is_(None) if l2.vlan is None else L2NetworkVO.vlan == l2.vlan,
                )
            )
            if clash is not None:
                raise Conflict(
                    f"clusterUuid: L2 network {clash.name} on the same interface"
                    f" ({l2.physicalInterface}{'' if l2.vlan is None else f' VLAN {l2.vlan}'})"
                    f" is already attached to cluster {cluster.name}",
                    code="L2_NETWORK.INTERFACE_CONFLICT",
                    field="clusterUuid",
                )
            links.add_link(s, CLUSTER_LINK, l2, cluster)
            s.flush()
            inv = rt.inventories(s, [l2])[0]
        await links.publish_link(call, CLUSTER_LINK, "attached", l2.uuid, cluster.uuid)
        return {"inventory": inv}

    @handler(DetachL2NetworkFromCluster)
    async def detach_l2(self, msg: DetachL2NetworkFromCluster, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("L2Network")
        with call.tx() as s:
            l2 = crud.get_row(s, rt, msg.l2NetworkUuid, "l2NetworkUuid")
            cluster = links.row_of(call, s, "Cluster", msg.clusterUuid, "clusterUuid")
            links.remove_link(s, CLUSTER_LINK, l2, cluster)
            s.flush()
            inv = rt.inventories(s, [l2])[0]
        await links.publish_link(call, CLUSTER_LINK, "detached", l2.uuid, cluster.uuid)
        return {"inventory": inv}
