"""Online changes of a running domain: vCPUs and memory hot-added, a disk grown.

A domain started with ``maxCpuNum`` / ``maxMemorySize`` (:mod:`agent.spec`) has
``<vcpu current=N>MAX</vcpu>`` and ``<maxMemory slots=...>`` with one NUMA cell
(:mod:`agent.drivers.domain_xml`). Growing it: ``setVcpusFlags`` to the new count, then one
``<memory model='dimm'>`` for the extra memory. Both limits are checked against the running
domain's own XML before anything changes, so a refused change leaves the domain as it was; a
DIMM that QEMU refuses after the vCPUs were added takes the vCPUs back (best effort: a guest
may hold a vCPU busy).

Shrinking is never done here: the node refuses it before asking (a guest cannot give memory
back reliably, and QEMU cannot unplug boot vCPUs).
"""

from __future__ import annotations

import logging
from typing import Any

import libvirt

from agent.drivers import xmledit
from agent.drivers.domain_xml import Dimm, to_xml
from zmn.api.errors import InvalidArgument
from zmn.api.hotplug import Limits, check

log = logging.getLogger("zagent.hotplug")


def limits_of(xml: str) -> Limits:
    root = xmledit.parse(xml)
    vcpu = root.find("vcpu")
    maximum = int((vcpu.text if vcpu is not None else None) or 1)
    current = int(vcpu.get("current") or maximum) if vcpu is not None else 1
    memory = _kib(root.find("memory")) * 1024
    max_el = root.find("maxMemory")
    max_memory = _kib(max_el) * 1024 if max_el is not None else memory
    slots = int(max_el.get("slots") or 0) if max_el is not None else 0
    used = len(root.findall("devices/memory"))
    return Limits(current, maximum, memory, max_memory, max(slots - used, 0))


def _kib(el: Any) -> int:
    if el is None or not el.text:
        return 0
    factor = {"b": 1 / 1024, "bytes": 1 / 1024, "KiB": 1, "k": 1, "MiB": 1024, "M": 1024,
              "GiB": 1024 * 1024, "G": 1024 * 1024}.get(el.get("unit") or "KiB", 1)  # fmt: skip
    return int(int(el.text) * factor)


def set_cpu_memory(dom: Any, uuid: str, flags: int, cpu_num: int, memory_size: int) -> Limits:
    """Grow a running domain to ``cpu_num`` vCPUs and ``memory_size`` bytes; return the new
    limits. ``flags``: AFFECT_LIVE (and AFFECT_CONFIG for a persistent domain)."""
    have = limits_of(dom.XMLDesc(0))
    check(uuid, have, cpu_num, memory_size)
    if cpu_num > have.cpu_num:
        dom.setVcpusFlags(cpu_num, flags)
    extra = memory_size - have.memory_size
    if extra:
        try:
            dom.attachDeviceFlags(to_xml(Dimm(extra).element()), flags)
        except libvirt.libvirtError:
            if cpu_num > have.cpu_num:
                try:
                    dom.setVcpusFlags(have.cpu_num, flags)
                except libvirt.libvirtError:
                    log.warning("VM %s keeps %d vCPUs after a failed memory hot-add", uuid,
                                cpu_num)  # fmt: skip
            raise
    return limits_of(dom.XMLDesc(0))


def resize_disk(dom: Any, uuid: str, target: str, size: int) -> int:
    """Grow the disk ``target`` of a running domain to ``size`` bytes (``blockResize``);
    return its new virtual size. Shrinking is refused (the guest's file system would be cut)."""
    info = dom.blockInfo(target)
    capacity = int(info[0])
    if size < capacity:
        raise InvalidArgument(
            f"size: disk {target} of VM {uuid} is {capacity} bytes; a volume only grows",
            code="VOLUME.SHRINK",
            field="size",
        )
    if size > capacity:
        dom.blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    return int(dom.blockInfo(target)[0])
