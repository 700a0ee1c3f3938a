"""An in-memory driver with the libvirt driver's interface and behaviour, for unit tests.

It builds the same domain XML (so validation and escaping are exercised), keeps the same
state rules (pause needs Running, resume needs Paused...), edits devices with the same XML
helpers and emits the lifecycle events libvirt would. ``calls`` records every operation so
tests can assert that a refused request reached nothing. ``crash(uuid)`` and
``stop_behind_back(uuid)`` simulate what happens to a VM outside the agent's commands.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from agent.drivers import hotplug, xmledit
from agent.drivers.base import (
    PAUSED,
    RUNNING,
    STOPPED,
    DomainInfo,
    EventListener,
    LifecycleEvent,
)
from agent.drivers.domain_xml import Dimm, Disk, Interface, build_domain, graphics_of, to_xml
from agent.drivers.fake_console import FakeConsole
from agent.drivers.features import TEST, DriverFeatures
from agent.spec import DiskSpec, NicSpec, VmSpec
from zmn.api.errors import Conflict, InvalidState, OperationFailed, not_found


@dataclass
class _Dom:
    xml: str
    state: str = STOPPED


class FakeDriver:
    """Driver interface over a dict of domains; ``features`` defaults to libvirt's test row."""

    def __init__(self, features: DriverFeatures = TEST, *, hostname: str = "fake-host") -> None:
        self.features = features
        self.hostname = hostname
        self.domains: dict[str, _Dom] = {}
        self._usage_rounds: dict[str, int] = {}  # usage() calls per domain: its counters
        self.calls: list[tuple[str, str]] = []
        self.shutdown_ignored: set[str] = set()
        self._listener: EventListener | None = None
        self._lock = threading.RLock()
        self.consoles: dict[str, FakeConsole] = {}

    # --- helpers -----------------------------------------------------------------------------

    def _get(self, uuid: str) -> _Dom:
        dom = self.domains.get(uuid)
        if dom is None:
            raise not_found("VmInstance", uuid, field="uuid")
        return dom

    def _emit(self, uuid: str, event: str, detail: str) -> None:
        dom = self.domains.get(uuid)
        state = dom.state if dom else STOPPED
        if self._listener is not None:
            self._listener(LifecycleEvent(uuid, uuid, event, detail, state))

    def _need(self, uuid: str, op: str, *states: str) -> _Dom:
        dom = self._get(uuid)
        if dom.state not in states:
            raise InvalidState(
                f"cannot {op} VM {uuid} in state {dom.state}",
                code="VM_INSTANCE.INVALID_STATE",
                state=dom.state,
            )
        return dom

    def _record(self, op: str, uuid: str) -> None:
        self.calls.append((op, uuid))

    # --- driver interface --------------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        with self._lock:
            running = [d for d in self.domains.values() if d.state in (RUNNING, PAUSED)]
            used_mem = sum(int(xmledit.text_of(d.xml, "memory")) * 1024 for d in running)
            used_cpu = sum(int(xmledit.text_of(d.xml, "vcpu")) for d in running)
        return {
            "hostname": self.hostname,
            "cpuNum": 8,
            "cpuModel": "fake",
            "cpuModelName": "Fake CPU",
            "cpuMHz": 2000,
            "memorySize": 16 << 30,
            "libvirtVersion": "0.0.0",
            "qemuVersion": None,
            "hypervisor": "FAKE",
            "domainType": self.features.domain_type,
            "kvm": self.features.domain_type == "kvm",
            "capacity": {
                "totalCpu": 8,
                "usedCpu": used_cpu,
                "totalMemory": 16 << 30,
                "usedMemory": used_mem,
                "availableMemory": (16 << 30) - used_mem,
            },
        }

    def define(self, spec: VmSpec) -> None:
        xml = to_xml(build_domain(spec, self.features))
        with self._lock:
            self._record("define", spec.uuid)
            dom = self.domains.get(spec.uuid)
            if dom is None:
                self.domains[spec.uuid] = _Dom(xml)
            else:
                dom.xml = xml
            self._emit(spec.uuid, "defined", "added" if dom is None else "updated")

    def start(self, uuid: str) -> None:
        with self._lock:
            dom = self._get(uuid)
            self._record("start", uuid)
            if dom.state in (RUNNING, PAUSED):
                return
            dom.state = RUNNING
            self._emit(uuid, "started", "booted")

    def shutdown(self, uuid: str, timeout: float) -> bool:
        with self._lock:
            dom = self._get(uuid)
            self._record("shutdown", uuid)
            if dom.state not in (RUNNING, PAUSED):
                return False
            dom.state = STOPPED
            forced = uuid in self.shutdown_ignored
            self._emit(uuid, "stopped", "destroyed" if forced else "shutdown")
            return forced

    def destroy(self, uuid: str) -> None:
        with self._lock:
            dom = self._get(uuid)
            self._record("destroy", uuid)
            if dom.state in (RUNNING, PAUSED):
                dom.state = STOPPED
                self._emit(uuid, "stopped", "destroyed")

    def reboot(self, uuid: str) -> None:
        with self._lock:
            self._need(uuid, "reboot", RUNNING)
            self._record("reboot", uuid)

    def suspend(self, uuid: str) -> None:
        with self._lock:
            dom = self._need(uuid, "pause", RUNNING, PAUSED)
            self._record("suspend", uuid)
            if dom.state == RUNNING:
                dom.state = PAUSED
                self._emit(uuid, "paused", "paused")

    def resume(self, uuid: str) -> None:
        with self._lock:
            dom = self._need(uuid, "resume", RUNNING, PAUSED)
            self._record("resume", uuid)
            if dom.state == PAUSED:
                dom.state = RUNNING
                self._emit(uuid, "resumed", "unpaused")

    def undefine(self, uuid: str) -> None:
        with self._lock:
            self._record("undefine", uuid)
            dom = self.domains.get(uuid)
            if dom is None:
                return
            if dom.state in (RUNNING, PAUSED):
                dom.state = STOPPED
                self._emit(uuid, "stopped", "destroyed")
            del self.domains[uuid]
            self._emit(uuid, "undefined", "removed")

    def _attach(self, uuid: str, device: ET.Element, present: bool) -> None:
        dom = self._get(uuid)
        if present:
            return
        if dom.state != STOPPED and not self.features.hotplug:
            raise OperationFailed(
                "this hypervisor cannot hot-plug devices; stop the VM first",
                code="AGENT.HOTPLUG_UNSUPPORTED",
            )
        dom.xml = xmledit.with_device(dom.xml, device)

    def attach_disk(self, uuid: str, disk: DiskSpec) -> None:
        with self._lock:
            self._record("attach_disk", uuid)
            el = Disk(disk).element()
            root = xmledit.parse(self._get(uuid).xml)
            self._attach(uuid, el, xmledit.disk_present(root, el))

    def attach_nic(self, uuid: str, nic: NicSpec) -> None:
        with self._lock:
            self._record("attach_nic", uuid)
            el = Interface(nic).element()
            root = xmledit.parse(self._get(uuid).xml)
            self._attach(uuid, el, xmledit.nic_present(root, el))

    def _detach(self, uuid: str, kind: str, key: str) -> None:
        dom = self._get(uuid)
        xml, found = xmledit.without(dom.xml, kind, key)
        if found and dom.state != STOPPED and not self.features.hotplug:
            raise OperationFailed(
                "this hypervisor cannot hot-unplug devices; stop the VM first",
                code="AGENT.HOTPLUG_UNSUPPORTED",
            )
        dom.xml = xml

    def detach_disk(self, uuid: str, target: str) -> None:
        with self._lock:
            self._record("detach_disk", uuid)
            self._detach(uuid, "disk", target)

    def change_media(self, uuid: str, disk: DiskSpec) -> None:
        with self._lock:
            self._record("change_media", uuid)
            dom = self._get(uuid)
            xml, _found = xmledit.without(dom.xml, "disk", disk.target)
            dom.xml = xmledit.with_device(xml, Disk(disk).element())

    def detach_nic(self, uuid: str, mac: str) -> None:
        with self._lock:
            self._record("detach_nic", uuid)
            self._detach(uuid, "nic", mac)

    def set_cpu_memory(self, uuid: str, cpu_num: int, memory_size: int) -> dict[str, int]:
        """Same checks as the libvirt driver (:mod:`agent.drivers.hotplug`), on the XML."""
        with self._lock:
            dom = self._need(uuid, "change the vCPUs and memory of", RUNNING, PAUSED)
            self._record("set_cpu_memory", uuid)
            if not self.features.hotplug:
                raise OperationFailed(
                    "this hypervisor cannot hot-plug devices; stop the VM first",
                    code="AGENT.HOTPLUG_UNSUPPORTED",
                )
            have = hotplug.limits_of(dom.xml)
            hotplug.check(uuid, have, cpu_num, memory_size)
            root = xmledit.parse(dom.xml)
            vcpu = root.find("vcpu")
            if vcpu is not None:
                vcpu.set("current", str(cpu_num))
            extra = memory_size - have.memory_size
            if extra:
                mem = root.find("memory")
                if mem is not None:
                    mem.text = str(memory_size // 1024)
                    mem.set("unit", "KiB")
                devices = root.find("devices")
                if devices is not None:
                    devices.append(Dimm(extra).element())
            dom.xml = to_xml(root)
            return hotplug.limits_of(dom.xml).to_wire()

    def resize_disk(self, uuid: str, target: str, size: int) -> int:
        with self._lock:
            self._need(uuid, "resize a disk of", RUNNING, PAUSED)
            self._record("resize_disk", uuid)
            if xmledit.find_disk(xmledit.parse(self.domains[uuid].xml), target) is None:
                raise not_found("Disk", target, field="target")
            return size

    def migrate(self, uuid: str, dest_uri: str) -> None:
        with self._lock:
            self._need(uuid, "migrate", RUNNING, PAUSED)
            self._record("migrate", uuid)
            if not self.features.migrate:
                raise OperationFailed(
                    "this hypervisor cannot migrate", code="AGENT.MIGRATE_UNSUPPORTED"
                )
            self.domains[uuid].state = STOPPED
            self._emit(uuid, "stopped", "migrated")
            del self.domains[uuid]

    def list(self) -> list[DomainInfo]:
        with self._lock:
            return [
                DomainInfo(u, u, xmledit.text_of(d.xml, "title"), d.state)
                for u, d in sorted(self.domains.items())
            ]

    def usage(self) -> dict[str, dict[str, float]]:
        """Running domains' counters, each call one second of a steady 10% CPU and some I/O."""
        with self._lock:
            running = [u for u, d in sorted(self.domains.items()) if d.state == RUNNING]
            out = {}
            for u in running:
                n = self._usage_rounds[u] = self._usage_rounds.get(u, 0) + 1
                out[u] = {"cpuTime": n * 1e8, "cpuNum": 1.0, "memoryTotal": 64 * 2.0**20,
                          "memoryUsed": 32 * 2.0**20, "diskReadBytes": n * 4096.0,
                          "diskWriteBytes": n * 8192.0, "netRxBytes": n * 1500.0,
                          "netTxBytes": n * 500.0}  # fmt: skip
            return out

    def state(self, uuid: str) -> str:
        with self._lock:
            return self._get(uuid).state

    def xml(self, uuid: str) -> str:
        with self._lock:
            return self._get(uuid).xml

    def open_console(self, uuid: str, force: bool) -> FakeConsole:
        with self._lock:
            dom = self._need(uuid, "open the console of", RUNNING, PAUSED)
            self._record("console", uuid)
            held = self.consoles.get(uuid)
            if held is not None and not held.closed:
                if not force:
                    raise Conflict(
                        f"VM {uuid}: another session holds the console; attach with force to"
                        " take it over",
                        code="VM_INSTANCE.CONSOLE_BUSY",
                        uuid=uuid,
                    )
                held.close()

            def running() -> bool:
                return self.domains.get(uuid) is dom and dom.state in (RUNNING, PAUSED)

            title = ET.fromstring(dom.xml).findtext("title") or ""  # noqa: S314 - our own XML
            console = self.consoles[uuid] = FakeConsole(uuid, running, title)
            return console

    def graphics(self, uuid: str) -> dict[str, Any] | None:
        with self._lock:
            dom = self._need(uuid, "open the graphical console of", RUNNING, PAUSED)
            info = graphics_of(dom.xml)
            if info is not None:
                info["port"] = 5900  # libvirt's first autoport
            return info

    def set_event_listener(self, listener: EventListener | None) -> None:
        self._listener = listener

    def close(self) -> None:
        self._listener = None

    # --- simulated outside events ------------------------------------------------------------

    def crash(self, uuid: str) -> None:
        """The guest died; with ``on_crash=destroy`` libvirt reports it stopped/crashed."""
        with self._lock:
            self._get(uuid).state = STOPPED
            self._emit(uuid, "crashed", "crashed")

    def stop_behind_back(self, uuid: str) -> None:
        """Someone ran ``virsh destroy``: Stopped, and a 'stopped' event."""
        with self._lock:
            self._get(uuid).state = STOPPED
            self._emit(uuid, "stopped", "destroyed")
