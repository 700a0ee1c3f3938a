"""libvirt domain XML, built with ElementTree element APIs: one small class per XML element.

Each class holds the values of one element and has ``element()`` returning a fresh
``xml.etree.ElementTree.Element``; ElementTree does all escaping, so a VM name full of
quotes, ``<`` and ``&`` cannot change the document's structure. Nothing here formats XML
text by hand. :func:`build_domain` maps a validated :class:`~agent.spec.VmSpec` and a
:class:`~agent.drivers.features.DriverFeatures` row to the tree; :func:`pretty` is the canonical
form used by golden files and logs.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from agent.drivers.features import DriverFeatures
from agent.spec import DiskSpec, NicSpec, VmSpec
from agent.validate import dashed


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


@dataclass(frozen=True)
class Memory:
    """``<memory unit='KiB'>``; ``current`` gives ``<currentMemory>`` (the balloon target)."""

    size_bytes: int
    tag: str = "memory"

    def element(self) -> ET.Element:
        el = ET.Element(self.tag, unit="KiB")
        el.text = str(self.size_bytes // 1024)
        return el


@dataclass(frozen=True)
class MaxMemory:
    """``<maxMemory slots=...>``: the ceiling memory DIMMs may be hot-added up to."""

    size_bytes: int
    slots: int

    def element(self) -> ET.Element:
        el = ET.Element("maxMemory", slots=str(self.slots), unit="KiB")
        el.text = str(self.size_bytes // 1024)
        return el


@dataclass(frozen=True)
class Vcpu:
    """``<vcpu>``: ``maximum`` vCPUs exist, ``count`` of them online at boot."""

    count: int
    maximum: int = 0

    def element(self) -> ET.Element:
        el = ET.Element("vcpu", placement="static")
        if self.maximum > self.count:
            el.set("current", str(self.count))
        el.text = str(max(self.count, self.maximum))
        return el


@dataclass(frozen=True)
class Os:
    arch: str
    boot: tuple[str, ...] = ("hd",)

    def element(self) -> ET.Element:
        el = ET.Element("os")
        _sub(el, "type", "hvm", arch=self.arch)
        for dev in self.boot:
            _sub(el, "boot", dev=dev)
        return el


@dataclass(frozen=True)
class Features:
    """``<features>``: ACPI and APIC, which a guest needs to react to a shutdown request."""

    acpi: bool

    def element(self) -> ET.Element:
        el = ET.Element("features")
        if self.acpi:
            _sub(el, "acpi")
            _sub(el, "apic")
        return el


@dataclass(frozen=True)
class Cpu:
    """``<cpu>``: the mode from the feature table and a one-socket topology; with memory
    hot-add, one NUMA cell holding every vCPU and the boot memory (QEMU puts DIMMs in a
    NUMA node, so a guest without one cannot take them)."""

    vcpus: int
    mode: str | None
    numa_memory: int = 0  # bytes in cell 0; 0: no <numa>

    def element(self) -> ET.Element:
        el = ET.Element("cpu")
        if self.mode:
            el.set("mode", self.mode)
        _sub(el, "topology", sockets="1", dies="1", cores=str(self.vcpus), threads="1")
        if self.numa_memory:
            numa = _sub(el, "numa")
            cpus = "0" if self.vcpus == 1 else f"0-{self.vcpus - 1}"
            _sub(numa, "cell", id="0", cpus=cpus, memory=str(self.numa_memory // 1024), unit="KiB")
        return el


@dataclass(frozen=True)
class Clock:
    offset: str = "utc"

    def element(self) -> ET.Element:
        return ET.Element("clock", offset=self.offset)


@dataclass(frozen=True)
class Lifecycle:
    """``<on_poweroff>`` and friends: one element per event."""

    event: str
    action: str

    def element(self) -> ET.Element:
        el = ET.Element(f"on_{self.event}")
        el.text = self.action
        return el


@dataclass(frozen=True)
class Disk:
    spec: DiskSpec

    def element(self) -> ET.Element:
        s = self.spec
        el = ET.Element("disk", type=s.source_type, device=s.device)
        _sub(el, "driver", name="qemu", type=s.format, cache=s.cache)
        if s.path:  # a CD-ROM drive without a medium has no source
            _sub(el, "source", **{"file" if s.source_type == "file" else "dev": s.path})
        _sub(el, "target", dev=s.target, bus=s.bus)
        if s.read_only or s.device == "cdrom":
            _sub(el, "readonly")
        if s.serial:
            _sub(el, "serial", s.serial)
        return el


@dataclass(frozen=True)
class Interface:
    spec: NicSpec

    def element(self) -> ET.Element:
        s = self.spec
        el = ET.Element("interface", type="bridge")
        _sub(el, "mac", address=s.mac)
        _sub(el, "source", bridge=s.bridge)
        if s.device_name:
            _sub(el, "target", dev=s.device_name)
        _sub(el, "model", type=s.model)
        if s.mtu:
            _sub(el, "mtu", size=str(s.mtu))
        return el


@dataclass(frozen=True)
class Dimm:
    """``<memory model='dimm'>``: memory hot-added to NUMA node 0 of a running domain."""

    size_bytes: int

    def element(self) -> ET.Element:
        el = ET.Element("memory", model="dimm")
        target = _sub(el, "target")
        _sub(target, "size", str(self.size_bytes // 1024), unit="KiB")
        _sub(target, "node", "0")
        return el


@dataclass(frozen=True)
class Serial:
    def element(self) -> ET.Element:
        el = ET.Element("serial", type="pty")
        _sub(el, "target", port="0")
        return el


@dataclass(frozen=True)
class Console:
    def element(self) -> ET.Element:
        el = ET.Element("console", type="pty")
        _sub(el, "target", type="serial", port="0")
        return el


@dataclass(frozen=True)
class Graphics:
    """A VNC or SPICE console on one address with a password: never a wildcard address,
    never without a password (refused here too, not only by :func:`agent.spec.parse_vm`)."""

    kind: str  # vnc | spice
    listen: str
    password: str

    def element(self) -> ET.Element:
        if not self.password or ipaddress.ip_address(self.listen).is_unspecified:
            raise ValueError("a graphics console needs a password and a specific address")
        el = ET.Element(
            "graphics", type=self.kind, autoport="yes", listen=self.listen, passwd=self.password
        )
        _sub(el, "listen", type="address", address=self.listen)
        return el


def graphics_of(xml: str) -> dict[str, Any] | None:
    """Type, address, port and password of a running domain's first graphics device (its
    XML read with ``VIR_DOMAIN_XML_SECURE``), or None when it has none."""
    el = ET.fromstring(xml).find("devices/graphics")  # noqa: S314 - libvirtd's own answer
    if el is None:
        return None
    listen = el.find("listen")
    host = (listen.get("address") if listen is not None else None) or el.get("listen") or ""
    port = int(el.get("port") or -1)
    return {"type": el.get("type"), "host": host, "port": port, "password": el.get("passwd")}


@dataclass(frozen=True)
class Video:
    model: str

    def element(self) -> ET.Element:
        el = ET.Element("video")
        _sub(el, "model", type=self.model)
        return el


@dataclass(frozen=True)
class MemBalloon:
    def element(self) -> ET.Element:
        return ET.Element("memballoon", model="virtio")


Device = Disk | Interface | Serial | Console | Graphics | Video | MemBalloon


@dataclass(frozen=True)
class Devices:
    items: tuple[Device, ...]

    def element(self) -> ET.Element:
        el = ET.Element("devices")
        el.extend(d.element() for d in self.items)
        return el


@dataclass(frozen=True)
class Domain:
    """The root: identity (name, UUID, title, description) plus its child elements in order."""

    domain_type: str
    name: str
    uuid: str
    title: str
    description: str
    children: tuple[
        Memory | MaxMemory | Vcpu | Os | Features | Cpu | Clock | Lifecycle | Devices, ...
    ] = field(default_factory=tuple)

    def element(self) -> ET.Element:
        el = ET.Element("domain", type=self.domain_type)
        _sub(el, "name", self.name)
        _sub(el, "uuid", dashed(self.uuid))
        _sub(el, "title", self.title)
        if self.description:
            _sub(el, "description", self.description)
        el.extend(c.element() for c in self.children)
        return el


def devices_for(spec: VmSpec, features: DriverFeatures) -> tuple[Device, ...]:
    devs: list[Device] = [Disk(d) for d in spec.disks]
    devs += [Interface(n) for n in spec.nics]
    devs += [Serial(), Console()]
    if spec.console_mode != "none":
        devs.append(Graphics(spec.console_mode, spec.console_listen, spec.console_password))
        if features.video_model:
            devs.append(Video(features.video_model))
    if features.memballoon:
        devs.append(MemBalloon())
    return tuple(devs)


MEMORY_SLOTS = 16  # DIMM slots: each online memory change takes one


def build_domain(spec: VmSpec, features: DriverFeatures) -> Domain:
    """The element tree for a VM on a connection with ``features``. Hot-add limits
    (``max_cpu_num``, ``max_memory_size``) apply only where the feature row allows them."""
    max_cpu = spec.max_cpu_num if features.cpu_hotplug else 0
    max_mem = spec.max_memory_size if features.memory_hotplug else 0
    if max_mem <= spec.memory_size:
        max_mem = 0
    vcpus = max(spec.cpu_num, max_cpu)
    return Domain(
        domain_type=features.domain_type,
        name=spec.domain_name,
        uuid=spec.uuid,
        title=spec.name,
        description=spec.description,
        children=(
            *((MaxMemory(max_mem, MEMORY_SLOTS),) if max_mem else ()),
            Memory(spec.memory_size),
            Memory(spec.memory_size, tag="currentMemory"),
            Vcpu(spec.cpu_num, max_cpu),
            Os(features.arch, spec.boot_devices),
            *((Features(features.acpi),) if features.acpi else ()),
            Cpu(vcpus, features.cpu_mode, spec.memory_size if max_mem else 0),
            Clock(),
            Lifecycle("poweroff", "destroy"),
            Lifecycle("reboot", "restart"),
            Lifecycle("crash", "destroy"),
            Devices(devices_for(spec, features)),
        ),
    )


def to_xml(el: ET.Element | Domain | Device) -> str:
    """Serialise (compact) for libvirt."""
    node = el if isinstance(el, ET.Element) else el.element()
    return ET.tostring(node, encoding="unicode")


def pretty(xml: str | ET.Element) -> str:
    """Canonical, indented form: C14N (attribute order, quoting, whitespace) then indent."""
    text = xml if isinstance(xml, str) else ET.tostring(xml, encoding="unicode")
    canonical = ET.canonicalize(text, strip_text=True)
    root = ET.fromstring(canonical)  # noqa: S314 - our own output or a golden file
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"
