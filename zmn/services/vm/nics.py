"""NICs: a row per interface, each holding one address taken through ``AllocateIp``.

The NIC row is written first and the address is taken for it, so an address never exists
without the NIC that holds it (``CheckConsistency``: every VM address belongs to a live NIC);
removing a NIC runs the ``VmNicBeforeDelete`` hooks, gives the address back, then drops the row.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update

from zmn.api.ids import short_id
from zmn.core.db import new_uuid, utcnow
from zmn.core.service import send
from zmn.core.vmhooks import VmNicBeforeDelete
from zmn.services.vm.common import quietly
from zmn.services.vm.models import VmNicVO

if TYPE_CHECKING:
    from zmn.core.service import Call


def new_mac() -> str:
    """A locally administered unicast MAC (ZStack's fa: prefix)."""
    tail = random.getrandbits(40).to_bytes(5, "big")
    return "fa:" + tail.hex(":")


def next_device_id(call: Call, vm_uuid: str) -> int:
    with call.tx() as s:
        top = s.scalar(select(func.max(VmNicVO.deviceId)).where(VmNicVO.vmInstanceUuid == vm_uuid))
    return 0 if top is None else int(top) + 1


def nic_inventory(call: Call, uuid: str) -> dict[str, Any]:
    rt = call.node.resources.get("VmNic")
    with call.tx() as s:
        row = s.get(VmNicVO, uuid)
        assert row is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        return rt.inventories(s, [row])[0]


async def create_nic(
    call: Call,
    vm_uuid: str,
    l3_uuid: str,
    device_id: int,
    static_ip: str | None = None,
    hypervisor_type: str | None = None,
) -> dict[str, Any]:
    """A NIC on ``l3_uuid`` with an address; nothing is left behind when it fails."""
    uuid = new_uuid()
    now = utcnow()
    row: dict[str, Any] = {
        "uuid": uuid,
        "vmInstanceUuid": vm_uuid,
        "l3NetworkUuid": l3_uuid,
        "usedIpUuid": None,
        "ip": None,
        "mac": new_mac(),
        "netmask": None,
        "gateway": None,
        "deviceId": device_id,
        "internalName": f"vnic{short_id(vm_uuid)}.{device_id}",
        "hypervisorType": hypervisor_type,
        "leaseDate": None,
        "createDate": now,
        "lastOpDate": now,
    }
    with call.node.db.fast() as conn:  # cached statements: every create
        conn.execute(_INSERT_NIC, row)
    try:
        used = (
            await send(
                call,
                "AllocateIp",
                l3NetworkUuid=l3_uuid,
                ip=static_ip,
                usedFor="Vm",
                vmNicUuid=uuid,
            )
        )["usedIp"]
    except BaseException:
        with call.tx() as s:
            s.execute(delete(VmNicVO).where(VmNicVO.uuid == uuid))
        raise
    address = {
        "usedIpUuid": used["uuid"],
        "ip": used["ip"],
        "netmask": used["netmask"],
        "gateway": used["gateway"],
        "lastOpDate": utcnow(),
    }
    with call.node.db.fast() as conn:
        conn.execute(_SET_ADDRESS, {"_uuid": uuid, **address})
    rt = call.node.resources.get("VmNic")
    if rt.inventory_hook is not None:
        return nic_inventory(call, uuid)
    row.update(address)
    return rt.inventory(SimpleNamespace(**row))


_NIC = cast(Table, VmNicVO.__table__)
_INSERT_NIC = insert(_NIC)
_SET_ADDRESS = (
    update(_NIC)
    .where(_NIC.c.uuid == bindparam("_uuid"))
    .values({c: bindparam(c) for c in ("usedIpUuid", "ip", "netmask", "gateway", "lastOpDate")})
)


async def remove_nic(call: Call, nic: dict[str, Any], *, hooks: bool = True) -> None:
    """Run the before-delete hooks, give the address back, drop the row."""
    if hooks:
        for impl in call.node.extensions.all(VmNicBeforeDelete):  # type: ignore[type-abstract]
            await impl.before_vm_nic_delete(nic)
    if nic.get("usedIpUuid"):
        await send(call, "ReleaseIp", usedIpUuid=nic["usedIpUuid"])
    with call.tx() as s:
        s.execute(delete(VmNicVO).where(VmNicVO.uuid == nic["uuid"]))


async def remove_nics_of(call: Call, vm_uuid: str, *, best_effort: bool = False) -> None:
    rt = call.node.resources.get("VmNic")
    with call.tx() as s:
        rows = list(s.scalars(select(VmNicVO).where(VmNicVO.vmInstanceUuid == vm_uuid)))
        nics = rt.inventories(s, rows)
    for nic in nics:
        if best_effort:
            await quietly(f"removing NIC {nic['uuid']}", remove_nic(call, nic))
        else:
            await remove_nic(call, nic)
