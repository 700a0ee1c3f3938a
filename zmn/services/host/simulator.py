"""The simulator hypervisor: hosts and VMs that exist only in this process.

It lets the whole product run on one machine with nothing installed, and lets tests make any
step fail on purpose. One :class:`SimulatorHypervisor` per node holds a record per host
(capacity, connection, VMs). Failures are injected by operation, for every host or for one
host (by UUID or management IP)::

    sim.inject("connect", host="10.0.0.99")            # adding that host fails, rolls back
    sim.inject("startVm", "no memory", host=host_uuid)  # for the VM life cycle
    sim.clear()

VM operations are deliberately small primitives (start, stop, destroy, state); the VM
service builds its life cycle on them and adds operations the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zmn.api.errors import NotFound, OperationFailed
from zmn.services.host.hosttype import HostFacts, HostRef

DEFAULT_CPU = 8
DEFAULT_MEMORY = 16 * 1024**3


class SimulatorError(OperationFailed):
    """An operation on the simulator failed (injected, or the host is not connected)."""

    default_code = "SIMULATOR.FAILURE"


@dataclass
class SimulatedVm:
    uuid: str
    state: str  # Running | Stopped | Paused
    cpuNum: int
    memorySize: int


@dataclass
class SimulatedHost:
    uuid: str
    managementIp: str
    cpuNum: int
    memoryCapacity: int
    connected: bool = True
    vms: dict[str, SimulatedVm] = field(default_factory=dict)

    @property
    def used_cpu(self) -> int:
        return sum(vm.cpuNum for vm in self.vms.values() if vm.state != "Stopped")

    @property
    def used_memory(self) -> int:
        return sum(vm.memorySize for vm in self.vms.values() if vm.state != "Stopped")


class SimulatorHypervisor:
    """Every simulated host of one node, with failure injection."""

    def __init__(self) -> None:
        self.hosts: dict[str, SimulatedHost] = {}
        # "operation" or "operation:<host uuid or management IP>" -> error message
        self.failures: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, host uuid): what was asked, in order

    # ----------------------------------------------------------------- failure injection

    def inject(
        self, operation: str, message: str = "injected failure", *, host: str | None = None
    ) -> None:
        self.failures[f"{operation}:{host}" if host else operation] = message

    def clear(self, operation: str | None = None, *, host: str | None = None) -> None:
        if operation is None:
            self.failures.clear()
        else:
            self.failures.pop(f"{operation}:{host}" if host else operation, None)

    def check(self, operation: str, host_uuid: str, management_ip: str = "") -> None:
        """Record the call; raise if a failure is injected for it."""
        self.calls.append((operation, host_uuid))
        for key in (f"{operation}:{host_uuid}", f"{operation}:{management_ip}", operation):
            message = self.failures.get(key)
            if message is not None:
                raise SimulatorError(
                    f"simulator {operation} on host {management_ip or host_uuid}: {message}",
                    code="SIMULATOR.INJECTED_FAILURE",
                    operation=operation,
                    hostUuid=host_uuid,
                )

    # ----------------------------------------------------------------- hosts

    def connect(self, uuid: str, management_ip: str, cpu_num: int, memory: int) -> SimulatedHost:
        self.check("connect", uuid, management_ip)
        host = self.hosts.get(uuid)
        if host is None:
            host = self.hosts[uuid] = SimulatedHost(uuid, management_ip, cpu_num, memory)
        host.managementIp = management_ip
        host.connected = True
        return host

    def host(self, uuid: str) -> SimulatedHost:
        host = self.hosts.get(uuid)
        if host is None or not host.connected:
            raise SimulatorError(
                f"simulated host {uuid} is not connected", code="SIMULATOR.NOT_CONNECTED"
            )
        return host

    def ping(self, uuid: str) -> None:
        host = self.hosts.get(uuid)
        self.check("ping", uuid, host.managementIp if host else "")
        self.host(uuid)

    def forget(self, uuid: str) -> None:
        self.hosts.pop(uuid, None)

    # ----------------------------------------------------------------- VMs

    def start_vm(self, host_uuid: str, vm_uuid: str, cpu_num: int, memory_size: int) -> SimulatedVm:
        host = self.host(host_uuid)
        self.check("startVm", host_uuid, host.managementIp)
        vm = host.vms.get(vm_uuid)
        if vm is None:
            vm = host.vms[vm_uuid] = SimulatedVm(vm_uuid, "Running", cpu_num, memory_size)
        vm.state = "Running"
        return vm

    def stop_vm(self, host_uuid: str, vm_uuid: str) -> SimulatedVm:
        host = self.host(host_uuid)
        self.check("stopVm", host_uuid, host.managementIp)
        vm = self._vm(host, vm_uuid)
        vm.state = "Stopped"
        return vm

    def destroy_vm(self, host_uuid: str, vm_uuid: str) -> None:
        host = self.host(host_uuid)
        self.check("destroyVm", host_uuid, host.managementIp)
        host.vms.pop(vm_uuid, None)

    def vm_states(self, host_uuid: str) -> dict[str, str]:
        return {uuid: vm.state for uuid, vm in self.host(host_uuid).vms.items()}

    @staticmethod
    def _vm(host: SimulatedHost, vm_uuid: str) -> SimulatedVm:
        vm = host.vms.get(vm_uuid)
        if vm is None:
            raise NotFound(f"no VM {vm_uuid} on simulated host {host.uuid}", code="SIMULATOR.NO_VM")
        return vm


class SimulatorHostType:
    """The built-in ``Simulator`` host type, backed by a :class:`SimulatorHypervisor`."""

    hypervisor_type = "Simulator"

    def __init__(self, hypervisor: SimulatorHypervisor | None = None) -> None:
        self.hypervisor = hypervisor or SimulatorHypervisor()

    async def connect(self, host: HostRef, params: Mapping[str, Any]) -> None:
        # a reconnect after a node restart rebuilds the record from the last known capacity
        cpu = int(params.get("cpuCapacity") or host.totalCpuCapacity or DEFAULT_CPU)
        memory = int(params.get("memoryCapacity") or host.totalMemoryCapacity or DEFAULT_MEMORY)
        self.hypervisor.connect(host.uuid, host.managementIp, cpu, memory)

    async def facts(self, host: HostRef) -> HostFacts:
        self.hypervisor.check("facts", host.uuid, host.managementIp)
        record = self.hypervisor.host(host.uuid)
        return HostFacts(
            cpuNum=record.cpuNum, cpuCapacity=record.cpuNum, memoryCapacity=record.memoryCapacity
        )

    async def ping(self, host: HostRef) -> None:
        self.hypervisor.ping(host.uuid)

    async def disconnect(self, host: HostRef) -> None:
        self.hypervisor.forget(host.uuid)
