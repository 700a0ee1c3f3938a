"""Device edits on an existing domain XML, shared by the libvirt and the fake driver.

A stopped domain gets a device by redefining its persistent XML with the device added, which
every libvirt driver supports (the test driver has no attach API); a running one goes through
the hotplug API when the feature table allows it. Both paths find devices here: disks by
their target (``vdb``), NICs by MAC address.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from zmn.api.errors import Conflict


def parse(xml: str) -> ET.Element:
    """Parse domain XML. Its sources are libvirt and our own builder, never a request body
    (requests carry JSON), so the stdlib parser is safe here."""
    return ET.fromstring(xml)  # noqa: S314 - trusted source, see docstring


def _devices(root: ET.Element) -> ET.Element:
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    return devices


def find_disk(root: ET.Element, target: str) -> ET.Element | None:
    for disk in root.iterfind("devices/disk"):
        t = disk.find("target")
        if t is not None and t.get("dev") == target:
            return disk
    return None


def find_nic(root: ET.Element, mac: str) -> ET.Element | None:
    for nic in root.iterfind("devices/interface"):
        m = nic.find("mac")
        if m is not None and (m.get("address") or "").lower() == mac:
            return nic
    return None


def _source(el: ET.Element) -> dict[str, str]:
    src = el.find("source")
    return dict(src.attrib) if src is not None else {}


def disk_present(root: ET.Element, disk: ET.Element) -> bool:
    """True when the same disk is already there; Conflict when its target holds another."""
    target = disk.find("target")
    existing = find_disk(root, target.get("dev", "") if target is not None else "")
    if existing is None:
        return False
    if _source(existing) != _source(disk):
        raise Conflict(
            "another disk already uses this target", code="AGENT.DEVICE_IN_USE", field="deviceId"
        )
    return True


def nic_present(root: ET.Element, nic: ET.Element) -> bool:
    """True when a NIC with this MAC is on the same bridge; Conflict when on another."""
    mac = nic.find("mac")
    existing = find_nic(root, mac.get("address", "") if mac is not None else "")
    if existing is None:
        return False
    if _source(existing) != _source(nic):
        raise Conflict(
            "a NIC with this MAC is on another bridge", code="AGENT.DEVICE_IN_USE", field="mac"
        )
    return True


def with_device(domain_xml: str, device: ET.Element) -> str:
    root = parse(domain_xml)
    _devices(root).append(device)
    return ET.tostring(root, encoding="unicode")


def without(domain_xml: str, kind: str, key: str) -> tuple[str, bool]:
    """The XML without the disk (kind 'disk', key target) or NIC (kind 'nic', key MAC)."""
    root = parse(domain_xml)
    el = find_disk(root, key) if kind == "disk" else find_nic(root, key)
    if el is None:
        return domain_xml, False
    _devices(root).remove(el)
    return ET.tostring(root, encoding="unicode"), True


def text_of(domain_xml: str, tag: str) -> str:
    el = parse(domain_xml).find(tag)
    return (el.text or "") if el is not None else ""
