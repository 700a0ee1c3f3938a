"""Host types: the extension point through which the host service drives hypervisors.

The host service knows hosts only through :class:`HostType`. The simulator type is built in;
a KVM type (agent over HTTP) registers itself the same way, from its own plugin, without the
host service or the simulator changing::

    node.extensions.add(HostType, KvmHostType(node))   # in the plugin's __init__

A type's ``connect`` must be idempotent: the node calls it at add, at ``ReconnectHost``, at
boot and after a host came back from a ping failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, runtime_checkable

from zmn.api.errors import InvalidArgument
from zmn.core.hosthooks import HostMaintenanceExtension

__all__ = [
    "HostFacts",
    "HostMaintenanceExtension",
    "HostRef",
    "HostType",
    "HostTypeRegistry",
    "HypervisorDriver",
    "ResumableHostType",
]

if TYPE_CHECKING:
    from zmn.core.extension import ExtensionRegistry


@dataclass(frozen=True)
class HostRef:
    """What a host type is told about a host (never an ORM row)."""

    uuid: str
    name: str
    managementIp: str
    clusterUuid: str
    hypervisorType: str
    totalCpuCapacity: int = 0  # last known, 0 when the host is new
    totalMemoryCapacity: int = 0


@dataclass(frozen=True)
class HostFacts:
    """What a connected host reports about itself."""

    cpuNum: int
    cpuCapacity: int  # vCPUs the host offers
    memoryCapacity: int  # bytes


@runtime_checkable
class HostType(Protocol):
    """A hypervisor the host service can add, connect, ping and disconnect."""

    hypervisor_type: str

    async def connect(self, host: HostRef, params: Mapping[str, Any]) -> None:
        """Reach the host (deploying or checking its agent); raise if it cannot be reached."""

    async def facts(self, host: HostRef) -> HostFacts:
        """CPU and memory of a connected host."""

    async def ping(self, host: HostRef) -> None:
        """Raise if the host does not answer."""

    async def disconnect(self, host: HostRef) -> None:
        """Forget the host (it was deleted, or its add rolled back)."""


@runtime_checkable
class ResumableHostType(Protocol):
    """A host type whose Connected hosts need no full reconnect after a node restart.

    At boot the tracker calls ``resume`` for every host the database says is Connected (in
    batches, in the background) instead of reconnecting it; a host for which it raises is
    reconnected. Types without it (KVM) are reconnected at every boot.
    """

    async def resume(
        self, host: HostRef, placed: Callable[[], Sequence[tuple[str, str, int, int]]]
    ) -> None:
        """Check the host answers (like ``ping``) and rebuild what this process keeps about
        it; ``placed()`` reads (uuid, state, vCPUs, bytes) of the VMs the database places on
        it, for a type that needs them (one indexed select, so call it only when needed: a
        boot that read every host's VMs grew with the VMs in the database)."""


@runtime_checkable
class HypervisorDriver(Protocol):
    """VM operations of a host type (the simulator now, the KVM agent later).

    ``op`` is one of start, stop, reboot, pause, resume, destroy, migrate, attachVolume,
    detachVolume, attachNic, detachNic, takeSnapshot, resizeVolume, changeCpuMemory; ``vm``
    is the VM inventory (with ``vmNics`` and ``allVolumes``); ``args`` holds what the
    operation needs besides (``targetHostUuid``, ``volume``, ``nic``, ``type=cold``, the
    hot-add limits ``maxCpuNum``/``maxMemorySize`` of a start, ``size`` of a resize ...). Returns what the hypervisor
    reports (at least ``state``).
    """

    async def vm_op(
        self, host: HostRef, op: str, vm: Mapping[str, Any], args: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def apply_security_group_rules(
        self, host: HostRef, vm_nic_uuid: str, rules: list[dict[str, Any]]
    ) -> None: ...


_DRIVES_VMS: dict[type, bool] = {}


def drives_vms(host_type: object) -> TypeGuard[HypervisorDriver]:
    """``isinstance(host_type, HypervisorDriver)``, decided once per class: a Protocol check
    walks the protocol's members at every call, and every VM operation asks."""
    cls = type(host_type)
    known = _DRIVES_VMS.get(cls)
    if known is None:
        known = _DRIVES_VMS[cls] = isinstance(host_type, HypervisorDriver)
    return known


class HostTypeRegistry:
    """Built-in host types plus those plugins add as :class:`HostType` extensions."""

    def __init__(self, extensions: ExtensionRegistry) -> None:
        self._extensions = extensions
        self._builtin: dict[str, HostType] = {}

    def add(self, host_type: HostType) -> None:
        self._builtin[host_type.hypervisor_type] = host_type

    def all(self) -> dict[str, HostType]:
        found = dict(self._builtin)
        for impl in self._extensions.all(HostType):  # type: ignore[type-abstract]
            found.setdefault(impl.hypervisor_type, impl)
        return found

    def get(self, hypervisor_type: str, field: str = "hypervisorType") -> HostType:
        found = self.all()
        host_type = found.get(hypervisor_type)
        if host_type is None:
            raise InvalidArgument(
                f"{field}: no host type {hypervisor_type!r} is installed"
                f" (installed: {', '.join(sorted(found)) or 'none'})",
                code="HOST.UNKNOWN_TYPE",
                field=field,
                choices=sorted(found),
            )
        return host_type
