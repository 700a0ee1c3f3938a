"""IP address management: the internal AllocateIp / ReleaseIp / SetUsedIpOwner messages.

An address is a ``UsedIp`` row. ``UNIQUE(l3NetworkUuid, ip)`` is what guarantees that no
address is given twice; allocation picks the lowest free address of the L3's ranges inside
one transaction (free of awaits, so one node never interleaves two of them) and, should
another node have taken it in the meantime, retries with the next one.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from zmn.api.errors import Conflict, InvalidArgument, not_found
from zmn.core import crud
from zmn.core.consistency import Violation
from zmn.core.db import new_uuid, utcnow
from zmn.core.service import Call, handler
from zmn.services.network.api import AllocateIp, DeleteUsedIp, ReleaseIp, SetUsedIpOwner
from zmn.services.network.l3 import L3_STATE
from zmn.services.network.models import IpRangeVO, L3NetworkVO, UsedIpVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

RETRIES = 20


def used_ip_inventory(row: UsedIpVO) -> dict[str, Any]:
    return {
        "uuid": row.uuid,
        "l3NetworkUuid": row.l3NetworkUuid,
        "ipRangeUuid": row.ipRangeUuid,
        "ip": row.ip,
        "ipInLong": row.ipInLong,
        "netmask": row.netmask,
        "gateway": row.gateway,
        "usedFor": row.usedFor,
        "vmNicUuid": row.vmNicUuid,
    }


def _ranges(session: Session, l3_uuid: str) -> list[IpRangeVO]:
    return list(
        session.scalars(
            select(IpRangeVO)
            .where(IpRangeVO.l3NetworkUuid == l3_uuid)
            .order_by(IpRangeVO.createDate, IpRangeVO.uuid)
        )
    )


def _bounds(r: IpRangeVO) -> tuple[int, int]:
    return int(ipaddress.IPv4Address(r.startIp)), int(ipaddress.IPv4Address(r.endIp))


def pick_free(
    session: Session, l3_uuid: str, ranges: list[IpRangeVO]
) -> tuple[IpRangeVO, int] | None:
    """The lowest address of the L3's ranges that no UsedIp row holds."""
    used = set(session.scalars(select(UsedIpVO.ipInLong).where(UsedIpVO.l3NetworkUuid == l3_uuid)))
    for r in ranges:
        start, end = _bounds(r)
        for value in range(start, end + 1):
            if value not in used:
                return r, value
    return None


def _static(ranges: list[IpRangeVO], ip: str) -> tuple[IpRangeVO, int]:
    try:
        value = int(ipaddress.IPv4Address(ip.strip()))
    except ValueError:
        raise InvalidArgument(f"ip: {ip!r} is not an IPv4 address", field="ip") from None
    for r in ranges:
        start, end = _bounds(r)
        if start <= value <= end:
            return r, value
    raise InvalidArgument(
        f"ip: {ip} is in no IP range of the L3 network",
        code="L3.IP_NOT_IN_RANGE",
        field="ip",
    )


class IpamHandlers:
    node: Node

    @handler(AllocateIp)
    async def allocate_ip(self, msg: AllocateIp, call: Call) -> dict[str, Any]:
        for _attempt in range(RETRIES):
            try:
                with call.tx() as s:
                    l3 = crud.get_row(
                        s, self.node.resources.get("L3Network"), msg.l3NetworkUuid, "l3NetworkUuid"
                    )
                    L3_STATE.check(l3.uuid, l3.state, "allocateIp")
                    ranges = _ranges(s, l3.uuid)
                    if msg.ip:
                        r, value = _static(ranges, msg.ip)
                    else:
                        found = pick_free(s, l3.uuid, ranges)
                        if found is None:
                            raise _exhausted(l3)
                        r, value = found
                    row = UsedIpVO(
                        uuid=new_uuid(),
                        l3NetworkUuid=l3.uuid,
                        ipRangeUuid=r.uuid,
                        ip=str(ipaddress.IPv4Address(value)),
                        ipInLong=value,
                        netmask=r.netmask,
                        gateway=r.gateway,
                        usedFor=msg.usedFor,
                        vmNicUuid=msg.vmNicUuid,
                    )
                    s.add(row)
                    s.flush()
                    return {"usedIp": used_ip_inventory(row)}
            except IntegrityError:
                if msg.ip:
                    raise Conflict(
                        f"ip: {msg.ip} is already in use on L3 network {msg.l3NetworkUuid}",
                        code="L3.IP_IN_USE",
                        field="ip",
                    ) from None
                continue  # another node took that address: try the next free one
        raise Conflict(
            f"could not allocate an address on L3 network {msg.l3NetworkUuid} after {RETRIES}"
            " attempts (heavy contention); try again",
            code="L3.IP_ALLOCATION_CONTENDED",
            retryable=True,
        )

    @handler(ReleaseIp)
    async def release_ip(self, msg: ReleaseIp, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            s.execute(delete(UsedIpVO).where(UsedIpVO.uuid == msg.usedIpUuid))
        return {}

    @handler(DeleteUsedIp)
    async def delete_used_ip(self, msg: DeleteUsedIp, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            row = s.get(UsedIpVO, msg.uuid)
            if row is None:
                raise not_found("UsedIp", msg.uuid)
            nic, used_for, ip = row.vmNicUuid, row.usedFor, row.ip
        if used_for == "Vm" and nic and "DeleteVmNic" in self.node.apis.apis:
            cls: Any = self.node.apis.get("DeleteVmNic")
            await call.call(cls(uuid=nic))  # the NIC gives its address back
        elif used_for != "Vm":
            raise Conflict(
                f"address {ip} is used by a {used_for}; delete the {used_for} first",
                code="L3.IP_IN_USE",
                usedIpUuid=msg.uuid,
            )
        with call.tx() as s:
            s.execute(delete(UsedIpVO).where(UsedIpVO.uuid == msg.uuid))
        return {}

    @handler(SetUsedIpOwner)
    async def set_used_ip_owner(self, msg: SetUsedIpOwner, call: Call) -> dict[str, Any]:
        with call.tx() as s:
            s.execute(
                update(UsedIpVO)
                .where(UsedIpVO.uuid == msg.usedIpUuid)
                .values(vmNicUuid=msg.vmNicUuid, lastOpDate=utcnow())
            )
        return {}


def _exhausted(l3: L3NetworkVO) -> Conflict:
    return Conflict(
        f"IP exhausted on L3 network {l3.name} ({l3.uuid}): every address of its ranges is in use",
        code="L3.IP_EXHAUSTED",
        field="l3NetworkUuid",
        l3NetworkUuid=l3.uuid,
    )


class UsedIpConsistency:
    """Every address given to a VM belongs to a live NIC that points back at it."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def check_consistency(self, session: Session) -> list[Violation]:
        nic_rt = self.node.resources.types.get("VmNic")
        rows = session.scalars(select(UsedIpVO).where(UsedIpVO.usedFor == "Vm")).all()
        if not rows:
            return []
        owners: dict[str, str] = {}
        if nic_rt is not None:
            model = nic_rt.model
            owners = {
                str(ip_uuid): str(nic_uuid)
                for nic_uuid, ip_uuid in session.execute(
                    select(model.uuid, model.usedIpUuid).where(model.usedIpUuid.is_not(None))
                )
            }
        out: list[Violation] = []
        for row in rows:
            nic = owners.get(row.uuid)
            if nic is None:
                out.append(
                    Violation(
                        check="ip-owned-by-nic",
                        resourceType="UsedIp",
                        uuid=row.uuid,
                        message=f"address {row.ip} of L3 {row.l3NetworkUuid} is used for a VM"
                        " but no NIC holds it",
                    )
                )
            elif row.vmNicUuid not in (None, nic):
                out.append(
                    Violation(
                        check="ip-owned-by-nic",
                        resourceType="UsedIp",
                        uuid=row.uuid,
                        message=f"address {row.ip} names NIC {row.vmNicUuid}"
                        f" but NIC {nic} holds it",
                        expected=nic,
                        actual=row.vmNicUuid,
                    )
                )
        return out
