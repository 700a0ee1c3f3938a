"""The simulator hypervisor, the host type registry and the host state tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from zmn.api.errors import InvalidArgument, InvalidState, NotFound
from zmn.core.extension import ExtensionRegistry
from zmn.services.host.hosttype import (
    HostFacts,
    HostRef,
    HostType,
    HostTypeRegistry,
    ResumableHostType,
)
from zmn.services.host.simulator import (
    CALLS_KEPT,
    SimulatorError,
    SimulatorHostType,
    SimulatorHypervisor,
)
from zmn.services.host.states import HOST_STATE, HOST_STATUS

REF = HostRef("h" * 32, "h1", "10.0.0.11", "c" * 32, "Simulator")


async def test_simulator_host_type_connects_and_reports() -> None:
    sim = SimulatorHypervisor()
    host_type = SimulatorHostType(sim)
    await host_type.connect(REF, {"cpuCapacity": 16, "memoryCapacity": 1024})
    assert await host_type.facts(REF) == HostFacts(cpuNum=16, cpuCapacity=16, memoryCapacity=1024)
    await host_type.ping(REF)
    # a reconnect without parameters keeps the record; after a restart, the last totals rebuild it
    await host_type.connect(REF, {})
    assert sim.hosts[REF.uuid].cpuNum == 16
    sim.hosts.clear()
    await host_type.connect(
        HostRef(**{**REF.__dict__, "totalCpuCapacity": 12, "totalMemoryCapacity": 99}), {}
    )
    assert (sim.hosts[REF.uuid].cpuNum, sim.hosts[REF.uuid].memoryCapacity) == (12, 99)
    await host_type.disconnect(REF)
    assert sim.hosts == {}
    with pytest.raises(SimulatorError):
        await host_type.ping(REF)


async def test_resume_after_a_restart_rebuilds_the_host_and_pings_it() -> None:
    sim = SimulatorHypervisor()
    host_type = SimulatorHostType(sim)
    assert isinstance(host_type, ResumableHostType)
    ref = HostRef(**{**REF.__dict__, "totalCpuCapacity": 12, "totalMemoryCapacity": 4096})
    await host_type.resume(ref, lambda: [("vm1", "Running", 2, 512), ("vm2", "Paused", 1, 256)])
    record = sim.hosts[REF.uuid]
    assert (record.cpuNum, record.memoryCapacity, record.connected) == (12, 4096, True)
    assert sim.vm_states(REF.uuid) == {"vm1": "Running", "vm2": "Paused"}
    assert list(sim.calls) == [("ping", REF.uuid)]  # a ping, not a connect
    await host_type.resume(ref, list)  # a known record is kept as it is
    assert set(sim.vm_states(REF.uuid)) == {"vm1", "vm2"}
    sim.inject("ping", "timeout", host=REF.uuid)
    with pytest.raises(SimulatorError):  # the tracker reconnects a host that fails it
        await host_type.resume(ref, list)


def test_calls_are_bounded() -> None:
    sim = SimulatorHypervisor()
    sim.connect(REF.uuid, REF.managementIp, 4, 1024)
    for _ in range(CALLS_KEPT + 50):
        sim.ping(REF.uuid)
    assert len(sim.calls) == CALLS_KEPT and sim.calls[-1] == ("ping", REF.uuid)


def test_failure_injection_by_operation_host_uuid_or_ip() -> None:
    sim = SimulatorHypervisor()
    sim.inject("connect", "down", host="10.0.0.11")
    with pytest.raises(SimulatorError) as failed:
        sim.connect(REF.uuid, "10.0.0.11", 4, 1024)
    assert failed.value.code == "SIMULATOR.INJECTED_FAILURE" and "down" in failed.value.message
    sim.connect("x" * 32, "10.0.0.12", 4, 1024)  # other hosts are unaffected
    sim.clear("connect", host="10.0.0.11")
    sim.connect(REF.uuid, "10.0.0.11", 4, 1024)
    sim.inject("ping", host=REF.uuid)
    with pytest.raises(SimulatorError):
        sim.ping(REF.uuid)
    sim.ping("x" * 32)
    sim.inject("ping")  # every host
    with pytest.raises(SimulatorError):
        sim.ping("x" * 32)
    sim.clear()
    sim.ping("x" * 32)
    assert ("connect", REF.uuid) in sim.calls and sim.calls[-1] == ("ping", "x" * 32)


def test_vm_primitives_and_usage() -> None:
    sim = SimulatorHypervisor()
    sim.connect(REF.uuid, REF.managementIp, 8, 8192)
    sim.start_vm(REF.uuid, "vm1", 2, 1024)
    sim.start_vm(REF.uuid, "vm2", 1, 512)
    host = sim.hosts[REF.uuid]
    assert (host.used_cpu, host.used_memory) == (3, 1536)
    sim.stop_vm(REF.uuid, "vm1")
    assert sim.vm_states(REF.uuid) == {"vm1": "Stopped", "vm2": "Running"}
    assert host.used_cpu == 1
    sim.inject("startVm", "no memory", host=REF.uuid)
    with pytest.raises(SimulatorError):
        sim.start_vm(REF.uuid, "vm3", 1, 1)
    sim.destroy_vm(REF.uuid, "vm2")
    with pytest.raises(NotFound):
        sim.stop_vm(REF.uuid, "vm2")
    host.connected = False
    with pytest.raises(SimulatorError) as down:
        sim.vm_states(REF.uuid)
    assert down.value.code == "SIMULATOR.NOT_CONNECTED"


class FakeKvm:
    hypervisor_type = "KVM"

    async def connect(self, host: HostRef, params: Mapping[str, Any]) -> None: ...

    async def facts(self, host: HostRef) -> HostFacts:
        return HostFacts(1, 1, 1)

    async def ping(self, host: HostRef) -> None: ...

    async def disconnect(self, host: HostRef) -> None: ...


def test_host_types_plug_in_as_extensions() -> None:
    extensions = ExtensionRegistry()
    types = HostTypeRegistry(extensions)
    types.add(SimulatorHostType())
    with pytest.raises(InvalidArgument) as unknown:
        types.get("KVM")
    assert unknown.value.code == "HOST.UNKNOWN_TYPE" and "Simulator" in unknown.value.message
    kvm = FakeKvm()
    assert isinstance(kvm, HostType)
    extensions.add(HostType, kvm)  # type: ignore[type-abstract]
    assert types.get("KVM") is kvm
    assert sorted(types.all()) == ["KVM", "Simulator"]


def test_host_state_tables() -> None:
    assert HOST_STATE.next("h", "Enabled", "preMaintain") == "PreMaintenance"
    assert HOST_STATE.next("h", "PreMaintenance", "maintain") == "Maintenance"
    assert HOST_STATE.next("h", "Maintenance", "enable") == "Enabled"
    with pytest.raises(InvalidState):
        HOST_STATE.next("h", "Enabled", "maintain")  # only through PreMaintenance
    HOST_STATE.check("h", "Maintenance", "reconnect")
    with pytest.raises(InvalidState):
        HOST_STATE.check("h", "PreMaintenance", "reconnect")
    with pytest.raises(InvalidState):
        HOST_STATE.check("h", "Disabled", "allocate")
    assert HOST_STATUS.next("h", "Disconnected", "connect") == "Connecting"
    assert set(HOST_STATUS.states) == {"Connecting", "Connected", "Disconnected"}


async def test_adopted_vms_become_records_when_the_host_is_first_looked_at() -> None:
    sim = SimulatorHypervisor()
    host_type = SimulatorHostType(sim)
    reads: list[str] = []

    def placed() -> list[tuple[str, str, int, int]]:
        reads.append(REF.uuid)
        return [("vm1", "Running", 2, 512), ("vm2", "Paused", 1, 256)]

    await host_type.resume(REF, placed)
    record = sim.hosts[REF.uuid]
    assert reads == [] and not record._vms  # a boot reads and builds no VM
    started = sim.start_vm(REF.uuid, "vm3", 1, 128)  # looking at the VMs reads them first
    assert reads == [REF.uuid] and started.state == "Running"
    assert sim.vm_states(REF.uuid) == {"vm1": "Running", "vm2": "Paused", "vm3": "Running"}
    assert record.used_cpu == 4 and record.seen == {"vm1", "vm2", "vm3"}
    del record.vms["vm1"]  # vanished without an operation: the record can tell
    assert sim.gone(REF.uuid) == ["vm1"]
    host_type.adopt(REF.uuid, [("vm2", "Running", 8, 1), ("vm4", "Running", 1, 64)])
    assert sim.vm(REF.uuid, "vm2").cpuNum == 1  # a VM it holds is kept as it is
    assert sim.vm(REF.uuid, "vm4").state == "Running"
    assert reads == [REF.uuid]  # read once
