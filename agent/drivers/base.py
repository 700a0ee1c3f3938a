"""The hypervisor driver interface shared by the libvirt driver and the fake one.

The HTTP layer talks only to this interface, so its unit tests run against
:class:`~agent.drivers.fake.FakeDriver` and the same tests' expectations hold for libvirt.
VMs are addressed by their UUID, which is also the libvirt domain name.

States follow ZStack's names: ``Running``, ``Paused``, ``Stopped``, ``Crashed``,
``Suspended`` (guest power-management sleep) and ``NoState``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.console import ConsoleChannel
from agent.drivers.features import DriverFeatures
from agent.spec import DiskSpec, NicSpec, VmSpec

RUNNING = "Running"
PAUSED = "Paused"
STOPPED = "Stopped"
CRASHED = "Crashed"
SUSPENDED = "Suspended"
NOSTATE = "NoState"


@dataclass(frozen=True)
class DomainInfo:
    """One row of ``/v1/vm/list``: the domain name, VM UUID, title (VM name) and state."""

    name: str
    uuid: str
    title: str
    state: str

    def to_wire(self) -> dict[str, str]:
        return {"name": self.name, "uuid": self.uuid, "title": self.title, "state": self.state}


@dataclass(frozen=True)
class LifecycleEvent:
    """A domain lifecycle change seen by the hypervisor, pushed to the node as a report.

    ``event`` is one of defined, undefined, started, paused, resumed, stopped, crashed,
    shutdown, pmsuspended; ``detail`` says why (``destroyed``, ``shutdown``, ``crashed``,
    ``migrated``, ``booted``...); ``state`` is the state the VM is now in.
    """

    uuid: str
    name: str
    event: str
    detail: str
    state: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "vmUuid": self.uuid,
            "domainName": self.name,
            "event": self.event,
            "detail": self.detail,
            "state": self.state,
        }


EventListener = Callable[[LifecycleEvent], None]


class Driver(Protocol):
    """What the agent needs from a hypervisor. Every method raises ``zmn.api.errors`` kinds:
    NotFound for an unknown VM, InvalidState for an operation the VM's state forbids,
    OperationFailed when the hypervisor refuses."""

    features: DriverFeatures

    def facts(self) -> dict[str, Any]: ...
    def define(self, spec: VmSpec) -> None: ...
    def start(self, uuid: str) -> None: ...
    def shutdown(self, uuid: str, timeout: float) -> bool: ...
    def destroy(self, uuid: str) -> None: ...
    def reboot(self, uuid: str) -> None: ...
    def suspend(self, uuid: str) -> None: ...
    def resume(self, uuid: str) -> None: ...
    def undefine(self, uuid: str) -> None: ...
    def attach_disk(self, uuid: str, disk: DiskSpec) -> None: ...
    def detach_disk(self, uuid: str, target: str) -> None: ...
    def change_media(self, uuid: str, disk: DiskSpec) -> None: ...
    def attach_nic(self, uuid: str, nic: NicSpec) -> None: ...
    def detach_nic(self, uuid: str, mac: str) -> None: ...
    def set_cpu_memory(self, uuid: str, cpu_num: int, memory_size: int) -> dict[str, int]: ...
    def resize_disk(self, uuid: str, target: str, size: int) -> int: ...
    def migrate(self, uuid: str, dest_uri: str) -> None: ...
    def list(self) -> list[DomainInfo]: ...
    def state(self, uuid: str) -> str: ...
    def xml(self, uuid: str) -> str: ...
    def open_console(self, uuid: str, force: bool) -> ConsoleChannel: ...
    def graphics(self, uuid: str) -> dict[str, Any] | None: ...
    def usage(self) -> dict[str, dict[str, float]]: ...
    def set_event_listener(self, listener: EventListener | None) -> None: ...
    def close(self) -> None: ...
