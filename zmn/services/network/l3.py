"""L3 network and IP range handlers."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.api.errors import InvalidArgument
from zmn.core import crud, links
from zmn.core.service import Call, handler
from zmn.core.state import StateMachine
from zmn.services.network.api import (
    AddIpRange,
    AddIpRangeByNetworkCidr,
    ChangeL3NetworkState,
    CreateL3Network,
    DeleteIpRange,
    DeleteL3Network,
    UpdateIpRange,
    UpdateL3Network,
)
from zmn.services.network.iprange import (
    ExistingRange,
    IpRangeSpec,
    check_against,
    check_range,
    range_from_cidr,
)
from zmn.services.network.models import IpRangeVO, L3NetworkVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

L3_STATE = StateMachine(
    "L3Network",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
    allowed={"allocateIp": {"Enabled"}},
)

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def check_dns_domain(value: str | None) -> None:
    if value is not None and not _DOMAIN.match(value):
        raise InvalidArgument(
            f"dnsDomain: {value!r} is not a domain name",
            code="L3_NETWORK.INVALID_DNS_DOMAIN",
            field="dnsDomain",
        )


def check_category(category: str, system: bool) -> None:
    if system and category == "Private":
        raise InvalidArgument(
            "system: a system L3 network must have category Public or System, not Private",
            code="L3_NETWORK.INVALID_CATEGORY",
            field="system",
        )
    if category == "System" and not system:
        raise InvalidArgument(
            "category: category System is for system networks; pass system=true",
            code="L3_NETWORK.INVALID_CATEGORY",
            field="category",
        )


def ip_ranges(session: Session, invs: list[dict[str, Any]], range_inventory: Any) -> None:
    """Add each L3 network's IP ranges to its inventory, as ZStack's L3NetworkInventory does."""
    by_l3: dict[str, list[dict[str, Any]]] = {inv["uuid"]: [] for inv in invs}
    rows = session.scalars(
        select(IpRangeVO)
        .where(IpRangeVO.l3NetworkUuid.in_(list(by_l3)))
        .order_by(IpRangeVO.createDate)
    )
    for row in rows:
        by_l3[row.l3NetworkUuid].append(range_inventory(row))
    for inv in invs:
        inv["ipRanges"] = by_l3[inv["uuid"]]


class L3Handlers:
    node: Node

    @handler(CreateL3Network)
    async def create_l3(self, msg: CreateL3Network, call: Call) -> dict[str, Any]:
        check_category(msg.category, msg.system)
        check_dns_domain(msg.dnsDomain)
        rt = self.node.resources.get("L3Network")
        with call.tx() as s:
            zone_uuid = links.row_of(
                call, s, "L2Network", msg.l2NetworkUuid, "l2NetworkUuid"
            ).zoneUuid
        row = L3NetworkVO(
            name=msg.name,
            l2NetworkUuid=msg.l2NetworkUuid,
            zoneUuid=zone_uuid,
            type=msg.type,
            category=msg.category,
            system=msg.system,
            dnsDomain=msg.dnsDomain,
            state="Enabled",
            ipVersion=4,
        )
        return await crud.create(
            call, "L3Network", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(UpdateL3Network)
    async def update_l3(self, msg: UpdateL3Network, call: Call) -> dict[str, Any]:
        check_dns_domain(msg.dnsDomain)
        links.check_rename(call, "L3Network", msg.uuid, msg.name)
        return await crud.update_fields(
            call,
            "L3Network",
            msg.uuid,
            {"name": msg.name, "description": msg.description, "dnsDomain": msg.dnsDomain},
        )

    @handler(ChangeL3NetworkState)
    async def change_l3_state(self, msg: ChangeL3NetworkState, call: Call) -> dict[str, Any]:
        return await crud.change_state(call, "L3Network", msg.uuid, msg.stateEvent, L3_STATE)

    @handler(DeleteL3Network)
    async def delete_l3(self, msg: DeleteL3Network, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "L3Network", msg.uuid, cascade=msg.cascade)

    # ----------------------------------------------------------------- IP ranges

    async def _add_range(self, call: Call, msg: Any, spec: IpRangeSpec) -> dict[str, Any]:
        rt = self.node.resources.get("IpRange")

        def check(s: Session) -> None:
            crud.unique_name(s, rt, msg.name, {"l3NetworkUuid": msg.l3NetworkUuid})
            rows = s.scalars(select(IpRangeVO).where(IpRangeVO.l3NetworkUuid == msg.l3NetworkUuid))
            check_against(
                spec,
                [
                    ExistingRange(r.uuid, r.name, r.startIp, r.endIp, r.gateway, r.networkCidr)
                    for r in rows
                ],
            )

        row = IpRangeVO(
            name=msg.name,
            l3NetworkUuid=msg.l3NetworkUuid,
            startIp=spec.startIp,
            endIp=spec.endIp,
            netmask=spec.netmask,
            gateway=spec.gateway,
            networkCidr=spec.networkCidr,
            ipVersion=4,
        )
        return await crud.create(call, "IpRange", row, msg, check=check)

    @handler(AddIpRange)
    async def add_ip_range(self, msg: AddIpRange, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "IpRange", msg)
        if existing is not None:
            return {"inventory": existing}
        return await self._add_range(
            call, msg, check_range(msg.startIp, msg.endIp, msg.netmask, msg.gateway)
        )

    @handler(AddIpRangeByNetworkCidr)
    async def add_ip_range_by_cidr(
        self, msg: AddIpRangeByNetworkCidr, call: Call
    ) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "IpRange", msg)
        if existing is not None:
            return {"inventory": existing}
        return await self._add_range(call, msg, range_from_cidr(msg.networkCidr, msg.gateway))

    @handler(UpdateIpRange)
    async def update_ip_range(self, msg: UpdateIpRange, call: Call) -> dict[str, Any]:
        links.check_rename(call, "IpRange", msg.uuid, msg.name, scope="l3NetworkUuid")
        return await crud.update_fields(
            call, "IpRange", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(DeleteIpRange)
    async def delete_ip_range(self, msg: DeleteIpRange, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "IpRange", msg.uuid, cascade=msg.cascade)
