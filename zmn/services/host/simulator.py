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

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zmn.api.errors import NotFound, OperationFailed, Unavailable
from zmn.api.hotplug import Limits, check
from zmn.services.host.hosttype import HostFacts, HostRef

DEFAULT_CPU = 8
DEFAULT_MEMORY = 16 * 1024**3
CALLS_KEPT = 10_000  # the last calls the simulator remembers (tests read them)


class SimulatorError(OperationFailed):
    """An operation on the simulator failed (injected, or the host is not connected)."""

    default_code = "SIMULATOR.FAILURE"


@dataclass
class SimulatedVm:
    uuid: str
    state: str  # Running | Stopped | Paused
    cpuNum: int
    memorySize: int
    volumes: dict[str, int] = field(default_factory=dict)  # volume UUID -> device id
    nics: dict[str, str] = field(default_factory=dict)  # NIC UUID -> IP
    snapshots: list[str] = field(default_factory=list)
    maxCpuNum: int = 0  # hot-add limits fixed at start (0: none)
    maxMemorySize: int = 0
    volumeSizes: dict[str, int] = field(default_factory=dict)  # volume UUID -> grown size


@dataclass
class FailurePlan:
    """What the next ``count`` operations of a kind on a host do (``SimulatorInjectFailure``)."""

    host: str  # host UUID, or "" for every host
    operation: str  # e.g. start, stop, migrate, or * for any VM operation
    count: int = 1
    latency: float = 0.0  # seconds to wait before answering
    disconnect: bool = False  # the host drops off the network instead of answering
    fail: bool = True  # the operation fails (after the latency)
    message: str = "injected failure"

    def matches(self, host_uuid: str, operation: str) -> bool:
        return (
            self.count > 0 and self.host in ("", host_uuid) and self.operation in ("*", operation)
        )


@dataclass
class SimulatedHost:
    uuid: str
    managementIp: str
    cpuNum: int
    memoryCapacity: int
    connected: bool = True
    # security-group rules applied per NIC (ApplySecurityGroupRules)
    rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _vms: dict[str, SimulatedVm] = field(default_factory=dict, repr=False)
    _seen: set[str] = field(default_factory=set, repr=False)
    # (uuid, state, vCPUs, bytes) of VMs the database places here, made into records when
    # the host's VMs are first looked at; after a node's boot ``_placed`` reads them then: a
    # boot with 1,000,000 VMs reads none of them and builds no VM object until one is needed
    _adopted: list[tuple[str, str, int, int]] = field(default_factory=list, repr=False)
    _placed: Callable[[], Sequence[tuple[str, str, int, int]]] | None = field(
        default=None, repr=False
    )

    @property
    def vms(self) -> dict[str, SimulatedVm]:
        if self._adopted or self._placed is not None:
            self._take_adopted()
        return self._vms

    @property
    def seen(self) -> set[str]:
        """VMs this record holds or held until they vanished without an operation (a crash,
        or a test removing them): only for those can it tell that a VM is gone. With several
        management nodes every node keeps its own record of a host (the simulator lives in
        its process), so a VM it never held may well run there through another node's."""
        if self._adopted or self._placed is not None:
            self._take_adopted()
        return self._seen

    def adopt(self, vms: Sequence[tuple[str, str, int, int]]) -> None:
        """The VMs the database places here run here again (kept as given until needed)."""
        self._adopted.extend(vms)

    def _take_adopted(self) -> None:
        placed, self._placed = self._placed, None
        if placed is not None:
            self._adopted.extend(placed())
        adopted, self._adopted = self._adopted, []
        for uuid, state, cpu, memory in adopted:
            if uuid not in self._vms:
                sim_state = "Paused" if state == "Paused" else "Running"
                self._vms[uuid] = SimulatedVm(uuid, sim_state, cpu, memory)
                self._seen.add(uuid)

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
        # (operation, host uuid): the last CALLS_KEPT asked, in order (bounded: pings never stop)
        self.calls: deque[tuple[str, str]] = deque(maxlen=CALLS_KEPT)
        self.plans: list[FailurePlan] = []

    def take_plan(self, host_uuid: str, operation: str) -> FailurePlan | None:
        """The failure plan for this operation, if any (and count it as used)."""
        for plan in self.plans:
            if plan.matches(host_uuid, operation):
                plan.count -= 1
                if plan.count <= 0:
                    self.plans.remove(plan)
                return plan
        return None

    # ----------------------------------------------------------------- failure injection

    def inject(
        self, operation: str, message: str = "injected failure", *, host: str | None = None
    ) -> None:
        self.failures[f"{operation}:{host}" if host else operation] = message

    def clear(self, operation: str | None = None, *, host: str | None = None) -> None:
        if operation is None:
            self.failures.clear()
            self.plans.clear()
        else:
            self.failures.pop(f"{operation}:{host}" if host else operation, None)

    def check(self, operation: str, host_uuid: str, management_ip: str = "") -> None:
        """Record the call; raise if a failure is injected for it."""
        self.calls.append((operation, host_uuid))
        if not self.failures:
            return
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
        host.seen.add(vm_uuid)
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
        host.seen.discard(vm_uuid)

    def reboot_vm(self, host_uuid: str, vm_uuid: str) -> SimulatedVm:
        return self._transition(host_uuid, vm_uuid, "rebootVm", {"Running"}, "Running")

    def pause_vm(self, host_uuid: str, vm_uuid: str) -> SimulatedVm:
        return self._transition(host_uuid, vm_uuid, "pauseVm", {"Running"}, "Paused")

    def resume_vm(self, host_uuid: str, vm_uuid: str) -> SimulatedVm:
        return self._transition(host_uuid, vm_uuid, "resumeVm", {"Paused"}, "Running")

    def migrate_vm(self, host_uuid: str, vm_uuid: str, target_uuid: str) -> SimulatedVm:
        host = self.host(host_uuid)
        target = self.host(target_uuid)
        self.check("migrateVm", host_uuid, host.managementIp)
        vm = self._vm(host, vm_uuid)
        if vm.state != "Running":
            raise SimulatorError(
                f"VM {vm_uuid} is {vm.state} on simulated host {host_uuid}; only a running VM"
                " migrates",
                code="SIMULATOR.BAD_VM_STATE",
            )
        target.vms[vm_uuid] = host.vms.pop(vm_uuid)
        host.seen.discard(vm_uuid)
        target.seen.add(vm_uuid)
        for nic in vm.nics:
            if nic in host.rules:
                target.rules[nic] = host.rules.pop(nic)
        return vm

    def _transition(
        self, host_uuid: str, vm_uuid: str, operation: str, allowed: set[str], new: str
    ) -> SimulatedVm:
        host = self.host(host_uuid)
        self.check(operation, host_uuid, host.managementIp)
        vm = self._vm(host, vm_uuid)
        if vm.state not in allowed:
            raise SimulatorError(
                f"VM {vm_uuid} is {vm.state} on simulated host {host_uuid}: cannot {operation}",
                code="SIMULATOR.BAD_VM_STATE",
            )
        vm.state = new
        return vm

    def vm(self, host_uuid: str, vm_uuid: str) -> SimulatedVm:
        return self._vm(self.host(host_uuid), vm_uuid)

    def vm_states(self, host_uuid: str) -> dict[str, str]:
        return {uuid: vm.state for uuid, vm in self.host(host_uuid).vms.items()}

    def gone(self, host_uuid: str) -> list[str]:
        """VMs this record held that vanished without an operation (see ``seen``)."""
        record = self.host(host_uuid)
        return sorted(record.seen - record.vms.keys())

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

    def adopt(self, host_uuid: str, vms: Sequence[tuple[str, str, int, int]]) -> None:
        """After a node restart: the VMs the database places on the host run there again."""
        record = self.hypervisor.hosts.get(host_uuid)
        if record is not None:
            record.adopt(vms)

    async def resume(
        self, host: HostRef, placed: Callable[[], Sequence[tuple[str, str, int, int]]]
    ) -> None:
        """At node boot, for a host the database says is Connected.

        The simulated hosts live in this process, so a restart lost their records; a real
        host would have kept running. Rebuild the record from the last known capacity with
        the VMs the database places there, read when the host's VMs are first looked at
        (what a reconnect does, without its status changes and capacity sync: the totals
        are the database's), then ping it.
        """
        sim = self.hypervisor
        if host.uuid not in sim.hosts:
            sim.hosts[host.uuid] = SimulatedHost(
                host.uuid,
                host.managementIp,
                int(host.totalCpuCapacity or DEFAULT_CPU),
                int(host.totalMemoryCapacity or DEFAULT_MEMORY),
                _placed=placed,
            )
        sim.ping(host.uuid)

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

    # ----------------------------------------------------------------- VM operations

    async def vm_op(
        self, host: HostRef, op: str, vm: Mapping[str, Any], args: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One VM operation, after whatever a failure plan says (latency, disconnect, fail)."""
        sim = self.hypervisor
        plan = sim.take_plan(host.uuid, op)
        if plan is not None:
            if plan.latency > 0:
                await asyncio.sleep(plan.latency)
            if plan.disconnect:
                record = sim.hosts.get(host.uuid)
                if record is not None:
                    record.connected = False
                raise Unavailable(
                    f"simulated host {host.managementIp} disconnected during {op}",
                    code="SIMULATOR.DISCONNECTED",
                    operation=op,
                    hostUuid=host.uuid,
                )
            if plan.fail:
                raise SimulatorError(
                    f"simulator {op} on host {host.managementIp}: {plan.message}",
                    code="SIMULATOR.INJECTED_FAILURE",
                    operation=op,
                    hostUuid=host.uuid,
                )
        return _VM_OPS[op](sim, host.uuid, vm, args) if op in _VM_OPS else _unsupported(op)

    async def apply_security_group_rules(
        self, host: HostRef, vm_nic_uuid: str, rules: list[dict[str, Any]]
    ) -> None:
        record = self.hypervisor.host(host.uuid)
        self.hypervisor.check("applySecurityGroupRules", host.uuid, host.managementIp)
        if rules:
            record.rules[vm_nic_uuid] = [dict(r) for r in rules]
        else:
            record.rules.pop(vm_nic_uuid, None)


Args = Mapping[str, Any]


def _unsupported(op: str) -> dict[str, Any]:
    raise OperationFailed(
        f"the simulator has no VM operation {op!r}", code="SIMULATOR.UNSUPPORTED", operation=op
    )


def _report(vm: SimulatedVm | None) -> dict[str, Any]:
    return {"state": vm.state if vm else "Stopped"}


def _start(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
    rec = sim.start_vm(host, vm["uuid"], int(vm["cpuNum"]), int(vm["memorySize"]))
    rec.cpuNum, rec.memorySize = int(vm["cpuNum"]), int(vm["memorySize"])
    rec.maxCpuNum = int(args.get("maxCpuNum") or 0)
    rec.maxMemorySize = int(args.get("maxMemorySize") or 0)
    rec.volumes = {
        v["uuid"]: int(v.get("deviceId") or 0)
        for v in vm.get("allVolumes", [])
        if v.get("deviceId") is not None
    }
    rec.nics = {n["uuid"]: str(n.get("ip") or "") for n in vm.get("vmNics", [])}
    return _report(rec)


def _stop(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
    # like a transient libvirt domain: a stopped VM is no longer defined on the host
    record = sim.host(host)
    if vm["uuid"] in record.vms:
        sim.stop_vm(host, vm["uuid"])
    else:  # already gone (e.g. the node restarted): stopping it is a success
        sim.check("stopVm", host, record.managementIp)
    record.vms.pop(vm["uuid"], None)
    record.seen.discard(vm["uuid"])
    for nic in vm.get("vmNics", []):
        record.rules.pop(nic["uuid"], None)
    return {"state": "Stopped"}


def _destroy(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
    sim.destroy_vm(host, vm["uuid"])
    record = sim.host(host)
    for nic in vm.get("vmNics", []):
        record.rules.pop(nic["uuid"], None)
    return {"state": "Destroyed"}


def _simple(name: str) -> Any:
    def run(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
        rec: SimulatedVm = getattr(sim, name)(host, vm["uuid"])
        return _report(rec)

    return run


def _migrate(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
    return _report(sim.migrate_vm(host, vm["uuid"], str(args["targetHostUuid"])))


def _locate(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
    rec = sim.host(host).vms.get(vm["uuid"])
    return {"present": rec is not None, "state": rec.state if rec is not None else None}


def _device(op: str) -> Any:
    """attach/detach of a volume or a NIC: recorded on the running VM's domain."""

    def run(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
        record = sim.host(host)
        sim.check(op, host, record.managementIp)
        rec = sim.vm(host, vm["uuid"])
        if op == "attachVolume":
            rec.volumes[args["volume"]["uuid"]] = int(args["volume"].get("deviceId") or 0)
        elif op == "detachVolume":
            rec.volumes.pop(args["volume"]["uuid"], None)
        elif op == "attachNic":
            rec.nics[args["nic"]["uuid"]] = str(args["nic"].get("ip") or "")
        elif op == "detachNic":
            rec.nics.pop(args["nic"]["uuid"], None)
            record.rules.pop(args["nic"]["uuid"], None)
        else:
            rec.snapshots.append(str(args["snapshotUuid"]))
        return _report(rec)

    return run


def _change_cpu_memory(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
    """Hot-add, with the limits the start fixed and the KVM agent's checks."""
    record = sim.host(host)
    sim.check("changeCpuMemory", host, record.managementIp)
    rec = sim.vm(host, vm["uuid"])
    have = Limits(
        rec.cpuNum,
        max(rec.cpuNum, rec.maxCpuNum),
        rec.memorySize,
        max(rec.memorySize, rec.maxMemorySize),
        free_slots=16,
    )
    cpu, memory = int(args["cpuNum"]), int(args["memorySize"])
    check(vm["uuid"], have, cpu, memory)
    rec.cpuNum, rec.memorySize = cpu, memory
    return {**_report(rec), "cpuNum": cpu, "memorySize": memory}


def _resize_volume(sim: SimulatorHypervisor, host: str, vm: Args, args: Args) -> dict[str, Any]:
    record = sim.host(host)
    sim.check("resizeVolume", host, record.managementIp)
    rec = sim.vm(host, vm["uuid"])
    rec.volumeSizes[str(args["volume"]["uuid"])] = int(args["size"])
    return _report(rec)


_VM_OPS: dict[str, Any] = {
    "start": _start,
    "stop": _stop,
    "destroy": _destroy,
    "reboot": _simple("reboot_vm"),
    "pause": _simple("pause_vm"),
    "resume": _simple("resume_vm"),
    "migrate": _migrate,
    "locate": _locate,
    "attachVolume": _device("attachVolume"),
    "detachVolume": _device("detachVolume"),
    "attachNic": _device("attachNic"),
    "detachNic": _device("detachNic"),
    "takeSnapshot": _device("takeSnapshot"),
    "changeCpuMemory": _change_cpu_memory,
    "resizeVolume": _resize_volume,
}
