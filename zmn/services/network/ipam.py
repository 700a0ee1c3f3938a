"""IP address management: the internal AllocateIp / ReleaseIp / SetUsedIpOwner messages.

An address is a ``UsedIp`` row. ``UNIQUE(l3NetworkUuid, ip)`` is what guarantees that no
address is given twice; allocation picks the lowest free address of the L3's ranges inside
one transaction (free of awaits, so one node never interleaves two of them) and, should
another node have taken it in the meantime, retries with the next one.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from zmn.api.errors import Conflict, InvalidArgument, not_found
from zmn.core.consistency import Violation
from zmn.core.db import new_uuid, utcnow
from zmn.core.service import Call, handler
from zmn.services.network.api import AllocateIp, DeleteUsedIp, ReleaseIp, SetUsedIpOwner
from zmn.services.network.l3 import L3_STATE
from zmn.services.network.models import IpRangeVO, L3NetworkVO, UsedIpVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.fastsql import AnyConnection
    from zmn.core.node import Node

RETRIES = 20


def used_ip_inventory(row: Any) -> dict[str, Any]:
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


def _bounds(r: Any) -> tuple[int, int]:
    return int(ipaddress.IPv4Address(r.startIp)), int(ipaddress.IPv4Address(r.endIp))


def pick_free(
    session: Session, l3_uuid: str, ranges: list[IpRangeVO]
) -> tuple[IpRangeVO, int] | None:
    """The lowest address of the L3's ranges that no UsedIp row holds."""
    used = set(session.scalars(select(UsedIpVO.ipInLong).where(UsedIpVO.l3NetworkUuid == l3_uuid)))
    return _lowest_free(ranges, used, None)


def _lowest_free(ranges: list[Any], used: set[int], hint: int | None) -> tuple[Any, int] | None:
    """The lowest value of the ranges (in their order) not in ``used``; ``hint``, when it lies
    in a range, says every value of the ranges before it is used."""
    for r in ranges:
        start, end = _bounds(r)
        if hint is not None and start <= hint <= end:
            start = hint
        for value in range(start, end + 1):
            if value not in used:
                return r, value
    return None


# How long this node trusts its copy of an L3's used addresses before checking it. Allocation
# and release on this node keep the copy exact; the check counts the L3's rows (one indexed
# count, no row read) and reads them all again only when the count differs from the copy's:
# another node (or a path that deletes rows without ReleaseIp) changed the L3. Another node's
# allocation also shows up as a UNIQUE violation (the copy is then read again). A release and
# an allocation elsewhere that leave the count as it was may leave a lower address unused
# until the copy is read again, at the latest after USED_FULL_READ_SECONDS.
USED_CACHE_SECONDS = 30.0
USED_FULL_READ_SECONDS = 600.0


@dataclass
class _UsedAddresses:
    """This node's copy of the addresses of one L3 network in use, and a scan start."""

    loaded_at: float  # when the copy was last read or checked
    ranges: tuple[str, ...]  # the L3's ranges when read: another set means read again
    used: set[int]
    hint: int | None = None  # every address of its range before this one is in use
    bounds: tuple[tuple[int, int], ...] = ()  # (first, last) address of each range, in order
    read_at: float = 0.0  # when the rows were last read


class UsedIpCache:
    """Per-L3 copies of the used addresses, so an allocation does not read them all."""

    def __init__(self) -> None:
        self.l3s: dict[str, _UsedAddresses] = {}

    def get(self, conn: AnyConnection, l3_uuid: str, ranges: list[Any]) -> _UsedAddresses:
        entry = self.l3s.get(l3_uuid)
        now = time.monotonic()
        names = tuple(r.uuid for r in ranges)
        if entry is not None and entry.ranges == names:
            if now - entry.loaded_at <= USED_CACHE_SECONDS:
                return entry
            if now - entry.read_at <= USED_FULL_READ_SECONDS and conn.scalar(
                _COUNT_USED, {"l3": l3_uuid}
            ) == len(entry.used):
                entry.loaded_at = now  # still this L3's addresses: no need to read them
                return entry
        used = set(conn.scalars(_SELECT_USED, {"l3": l3_uuid}))
        bounds = tuple(_bounds(r) for r in ranges)
        entry = self.l3s[l3_uuid] = _UsedAddresses(now, names, used, bounds=bounds, read_at=now)
        return entry

    def taken(self, l3_uuid: str, value: int) -> None:
        entry = self.l3s.get(l3_uuid)
        if entry is not None:
            entry.used.add(value)
            entry.hint = value

    def released(self, l3_uuid: str | None, value: int | None) -> None:
        entry = self.l3s.get(l3_uuid or "")
        if entry is None:
            return
        if value is None:
            del self.l3s[l3_uuid or ""]
            return
        entry.used.discard(value)
        # The scan starts at the hint inside the hint's range: an address released before
        # it in that range becomes the new start (the addresses before it are still in use);
        # one released in another range leaves the hint as it is (other ranges are scanned
        # from their start). Forgetting the hint made every allocation after a release scan
        # the whole range again: O(addresses in use) per create in a cloud with churn.
        hint = entry.hint
        if hint is None or value >= hint:
            return
        if not any(lo <= value <= hi and lo <= hint <= hi for lo, hi in entry.bounds):
            return
        entry.hint = value

    def forget(self, l3_uuid: str) -> None:
        self.l3s.pop(l3_uuid, None)


_L3 = cast(Table, L3NetworkVO.__table__)
_RANGE = cast(Table, IpRangeVO.__table__)
_USED = cast(Table, UsedIpVO.__table__)
_SELECT_L3 = select(_L3).where(_L3.c.uuid == bindparam("uuid"))
_SELECT_RANGES = (
    select(_RANGE)
    .where(_RANGE.c.l3NetworkUuid == bindparam("l3"))
    .order_by(_RANGE.c.createDate, _RANGE.c.uuid)
)
_SELECT_USED = select(_USED.c.ipInLong).where(_USED.c.l3NetworkUuid == bindparam("l3"))
_COUNT_USED = (
    select(func.count()).select_from(_USED).where(_USED.c.l3NetworkUuid == bindparam("l3"))
)
_INSERT_USED = insert(_USED)
_SELECT_USED_ROW = select(_USED.c.l3NetworkUuid, _USED.c.ipInLong).where(
    _USED.c.uuid == bindparam("uuid")
)


def _static(ranges: list[Any], ip: str) -> tuple[Any, int]:
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

    @property
    def used_ips(self) -> UsedIpCache:
        cache: UsedIpCache | None = getattr(self, "_used_ips", None)
        if cache is None:
            cache = self._used_ips = UsedIpCache()
        return cache

    @handler(AllocateIp)
    async def allocate_ip(self, msg: AllocateIp, call: Call) -> dict[str, Any]:
        """The lowest free address (or the one asked for): Core statements, and this node's
        copy of the used addresses instead of reading them all for every allocation."""
        for _attempt in range(RETRIES):
            try:
                with self.node.db.fast() as conn:
                    l3 = conn.execute(_SELECT_L3, {"uuid": msg.l3NetworkUuid}).first()
                    if l3 is None:
                        raise not_found("L3Network", msg.l3NetworkUuid, "l3NetworkUuid")
                    L3_STATE.check(l3.uuid, l3.state, "allocateIp")
                    ranges = list(conn.execute(_SELECT_RANGES, {"l3": l3.uuid}))
                    if msg.ip:
                        r, value = _static(ranges, msg.ip)
                    else:
                        cached = self.used_ips.get(conn, l3.uuid, ranges)
                        found = _lowest_free(ranges, cached.used, cached.hint)
                        if found is None:
                            self.used_ips.forget(l3.uuid)  # read again next time
                            raise _exhausted(l3)
                        r, value = found
                    row = {
                        "uuid": new_uuid(),
                        "l3NetworkUuid": l3.uuid,
                        "ipRangeUuid": r.uuid,
                        "ip": str(ipaddress.IPv4Address(value)),
                        "ipInLong": value,
                        "netmask": r.netmask,
                        "gateway": r.gateway,
                        "ipVersion": 4,
                        "usedFor": msg.usedFor,
                        "vmNicUuid": msg.vmNicUuid,
                    }
                    conn.execute(_INSERT_USED, row)
                if msg.ip:
                    self.used_ips.forget(l3.uuid)  # a static address: no scan position
                else:
                    self.used_ips.taken(l3.uuid, value)
                return {"usedIp": used_ip_inventory(SimpleNamespace(**row))}
            except IntegrityError:
                self.used_ips.forget(msg.l3NetworkUuid)  # another node took it: read again
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
            found = s.execute(_SELECT_USED_ROW, {"uuid": msg.usedIpUuid}).first()
            s.execute(delete(UsedIpVO).where(UsedIpVO.uuid == msg.usedIpUuid))
        if found is not None:
            self.used_ips.released(found.l3NetworkUuid, found.ipInLong)
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
            found = s.execute(_SELECT_USED_ROW, {"uuid": msg.uuid}).first()
            s.execute(delete(UsedIpVO).where(UsedIpVO.uuid == msg.uuid))
        if found is not None:
            self.used_ips.released(found.l3NetworkUuid, found.ipInLong)
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


def _exhausted(l3: Any) -> Conflict:
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
