"""Checks before ``vm-create`` runs, and the data the chain works from.

Everything that can be refused without touching anything is refused here, each error naming
its field: the image must be usable, the size given once, the networks in one zone, the scope
(zone, cluster, host) coherent, static addresses on networks the VM gets.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from zmn.api.errors import InvalidArgument, not_found
from zmn.core.db import new_uuid
from zmn.core.tags import TagPattern
from zmn.services.vm import cloudinit

if TYPE_CHECKING:
    from zmn.core.fastsql import FastConnection as Connection
    from zmn.core.service import Call
    from zmn.services.vm.api import CreateVmInstance


def _hostname(tokens: dict[str, str]) -> str | None:
    name = tokens["hostname"]
    ok = 0 < len(name) <= 63 and name.replace("-", "").isalnum() and not name.startswith("-")
    return None if ok else "hostname must be 1-63 letters, digits or - (not first)"


def _static_ip(tokens: dict[str, str]) -> str | None:
    try:
        ipaddress.IPv4Address(tokens["ip"])
    except ValueError:
        return f"{tokens['ip']!r} is not an IPv4 address"
    return None


HOSTNAME = TagPattern("hostname::{hostname}", "VmInstance", "the guest's host name", _hostname)
STATIC_IP = TagPattern(
    "staticIp::{l3NetworkUuid}::{ip}",
    "VmInstance",
    "the address the VM's NIC on that L3 network gets",
    _static_ip,
)


_by_uuid: dict[Any, Any] = {}  # model -> SELECT of one row by UUID (built once, cached compiled)


def _row(call: Call, s: Connection, type_name: str, uuid: str, field: str) -> Any:
    """The row (Core) of a resource by UUID, or the NotFound naming ``field``."""
    rt = call.node.resources.get(type_name)
    stmt = _by_uuid.get(rt.model)
    if stmt is None:
        table = rt.model.__table__
        stmt = _by_uuid[rt.model] = select(table).where(table.c.uuid == bindparam("uuid"))
    row = s.execute(stmt, {"uuid": uuid}).first()
    if row is None:
        raise not_found(rt.name, uuid, field)
    return row


def _enabled(row: Any, what: str, field: str) -> None:
    if getattr(row, "state", "Enabled") != "Enabled":
        raise InvalidArgument(
            f"{field}: {what} {row.name} is {row.state}; it must be Enabled",
            code="VM_INSTANCE.DISABLED_RESOURCE",
            field=field,
        )


def static_ips(msg: CreateVmInstance) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in msg.systemTags:
        tokens = STATIC_IP.match(tag)
        if tokens is None:
            continue
        if tokens["l3NetworkUuid"] not in msg.l3NetworkUuids:
            raise InvalidArgument(
                f"systemTags: {tag} names L3 network {tokens['l3NetworkUuid']}, which is not in"
                " l3NetworkUuids",
                code="VM_INSTANCE.STATIC_IP_L3",
                field="systemTags",
            )
        out[tokens["l3NetworkUuid"]] = tokens["ip"]
    return out


def plan_create(call: Call, msg: CreateVmInstance) -> dict[str, Any]:
    """The ``vm-create`` data for ``msg``, or the error naming the first bad field."""
    if not msg.l3NetworkUuids:
        raise InvalidArgument(
            "l3NetworkUuids: give at least one L3 network", field="l3NetworkUuids"
        )
    if len(set(msg.l3NetworkUuids)) != len(msg.l3NetworkUuids):
        raise InvalidArgument(
            "l3NetworkUuids: an L3 network is listed twice", field="l3NetworkUuids"
        )
    default_l3 = msg.defaultL3NetworkUuid or msg.l3NetworkUuids[0]
    if default_l3 not in msg.l3NetworkUuids:
        raise InvalidArgument(
            "defaultL3NetworkUuid must be one of l3NetworkUuids", field="defaultL3NetworkUuid"
        )
    with call.node.db.fast() as s:  # reads with statements built once: every create
        data: dict[str, Any] = {
            "vmUuid": msg.resourceUuid or new_uuid(),
            "name": msg.name,
            "type": msg.type,
            "strategy": msg.strategy,
            "l3NetworkUuids": list(msg.l3NetworkUuids),
            "defaultL3NetworkUuid": default_l3,
            "staticIps": static_ips(msg),
            "clusterUuid": msg.clusterUuid,
            "hostUuid": msg.hostUuid,
            "psUuid": msg.primaryStorageUuidForRootVolume,
            "cloudInit": cloudinit.plan(msg),
        }
        _size(call, s, msg, data)
        _image(call, s, msg, data)
        if data.pop("fromIso"):  # the ISO stays in the CD-ROM drive, which boots first
            msg.systemTags = [*msg.systemTags, f"iso::{data['imageUuid']}"]
        _disks(call, s, msg, data)
        data["zoneUuid"] = _zone(call, s, msg)
    return data


def _size(call: Call, s: Connection, msg: CreateVmInstance, data: dict[str, Any]) -> None:
    if msg.instanceOfferingUuid:
        if msg.cpuNum is not None or msg.memorySize is not None:
            raise InvalidArgument(
                "cpuNum: give either an instance offering or cpuNum and memorySize, not both",
                code="VM_INSTANCE.SIZE_TWICE",
                field="cpuNum",
            )
        off = _row(call, s, "InstanceOffering", msg.instanceOfferingUuid, "instanceOfferingUuid")
        _enabled(off, "instance offering", "instanceOfferingUuid")
        data.update(
            instanceOfferingUuid=off.uuid,
            cpuNum=off.cpuNum,
            memorySize=off.memorySize,
            cpuSpeed=off.cpuSpeed,
            allocatorStrategy=off.allocatorStrategy,
        )
        return
    if msg.cpuNum is None or msg.memorySize is None:
        raise InvalidArgument(
            "instanceOfferingUuid: give an instance offering, or cpuNum and memorySize",
            code="VM_INSTANCE.NO_SIZE",
            field="instanceOfferingUuid",
        )
    for field, value in (("cpuNum", msg.cpuNum), ("memorySize", msg.memorySize)):
        if value <= 0:
            raise InvalidArgument(f"{field} must be positive, got {value}", field=field)
    data.update(cpuNum=msg.cpuNum, memorySize=msg.memorySize, cpuSpeed=0, allocatorStrategy=None)


def _image(call: Call, s: Connection, msg: CreateVmInstance, data: dict[str, Any]) -> None:
    image = _row(call, s, "Image", msg.imageUuid, "imageUuid")
    _enabled(image, "image", "imageUuid")
    if image.status != "Ready":
        raise InvalidArgument(
            f"imageUuid: image {image.name} is {image.status}, not Ready",
            code="VM_INSTANCE.IMAGE_NOT_READY",
            field="imageUuid",
        )
    if image.mediaType == "DataVolumeTemplate":
        raise InvalidArgument(
            f"imageUuid: image {image.name} is a data volume template; a VM boots from a root"
            " volume template or an ISO",
            code="VM_INSTANCE.IMAGE_NOT_BOOTABLE",
            field="imageUuid",
        )
    root = int(image.size)
    if msg.rootDiskOfferingUuid:
        disk = _row(call, s, "DiskOffering", msg.rootDiskOfferingUuid, "rootDiskOfferingUuid")
        _enabled(disk, "disk offering", "rootDiskOfferingUuid")
        root = int(disk.diskSize) if image.mediaType == "ISO" else max(root, int(disk.diskSize))
    elif image.mediaType == "ISO":
        raise InvalidArgument(
            f"rootDiskOfferingUuid: image {image.name} is an ISO; give the root volume's size"
            " with a disk offering",
            code="VM_INSTANCE.ROOT_DISK_NEEDED",
            field="rootDiskOfferingUuid",
        )
    data.update(
        imageUuid=image.uuid,
        fromIso=image.mediaType == "ISO",
        platform=image.platform,
        format="qcow2" if image.format == "iso" else image.format,
        rootSize=root,
        rootDiskOfferingUuid=msg.rootDiskOfferingUuid,
    )


def _disks(call: Call, s: Connection, msg: CreateVmInstance, data: dict[str, Any]) -> None:
    disks = []
    for uuid in msg.dataDiskOfferingUuids:
        disk = _row(call, s, "DiskOffering", uuid, "dataDiskOfferingUuids")
        _enabled(disk, "disk offering", "dataDiskOfferingUuids")
        disks.append([disk.uuid, int(disk.diskSize)])
    data["dataDisks"] = disks
    data["volumeBytes"] = data["rootSize"] + sum(size for _, size in disks)


def _zone(call: Call, s: Connection, msg: CreateVmInstance) -> str:
    zones: dict[str, str] = {}
    for l3_uuid in msg.l3NetworkUuids:
        l3 = _row(call, s, "L3Network", l3_uuid, "l3NetworkUuids")
        _enabled(l3, "L3 network", "l3NetworkUuids")
        zones.setdefault(l3.zoneUuid, f"l3NetworkUuids ({l3.name})")
    if msg.hostUuid:
        host = _row(call, s, "Host", msg.hostUuid, "hostUuid")
        zones.setdefault(host.zoneUuid, "hostUuid")
        if msg.clusterUuid and host.clusterUuid != msg.clusterUuid:
            raise InvalidArgument(
                f"hostUuid: host {host.name} is not in cluster {msg.clusterUuid}",
                code="VM_INSTANCE.SCOPE_MISMATCH",
                field="hostUuid",
            )
    if msg.clusterUuid:
        zones.setdefault(
            _row(call, s, "Cluster", msg.clusterUuid, "clusterUuid").zoneUuid, "clusterUuid"
        )
    if msg.zoneUuid:
        zones.setdefault(msg.zoneUuid, "zoneUuid")
    if len(zones) > 1:
        where = ", ".join(f"{field} in zone {zone}" for zone, field in zones.items())
        raise InvalidArgument(
            f"the VM's networks and placement must be in one zone; got {where}",
            code="VM_INSTANCE.SCOPE_MISMATCH",
            field=list(zones.values())[-1].split(" ")[0],
        )
    return next(iter(zones))
