"""Messages the VM life cycle sends to the host service, and the simulator's admin APIs.

Internal messages (``internal=True``) are for other services only: host allocation and
capacity, hypervisor operations and security-group rules. The simulator APIs let an admin
(or a test driving ``zcli``) break the next operations of a host on purpose.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from zmn.api.message import ApiMessage, Doc, Ref, api

Strategy = Literal[
    "default",
    "least-used",
    "random",
    "DefaultHostAllocatorStrategy",
    "LastHostPreferredAllocatorStrategy",
    "LeastVmPreferredHostAllocatorStrategy",
    "MinimumCPUUsageHostAllocatorStrategy",
    "MinimumMemoryUsageHostAllocatorStrategy",
]


@api(internal=True)
class AllocateHost(ApiMessage, kw_only=True):
    """Choose a host for a VM and reserve its CPUs and memory there (one conditional UPDATE)."""

    cpuNum: Annotated[int, Doc("vCPUs to reserve")]
    memorySize: Annotated[int, Doc("bytes of memory to reserve")]
    zoneUuid: Annotated[str | None, Doc("only hosts of this zone")] = None
    clusterUuid: Annotated[str | None, Doc("only hosts of this cluster")] = None
    hostUuid: Annotated[str | None, Doc("only this host")] = None
    l3NetworkUuids: Annotated[list[str], Doc("the host's cluster must reach these L3s")] = []
    primaryStorageUuids: Annotated[
        list[str], Doc("the host's cluster must be attached to these primary storages")
    ] = []
    primaryStorageSize: Annotated[
        int, Doc("the cluster must have an enabled primary storage with this many bytes free")
    ] = 0
    avoidHostUuids: Annotated[list[str], Doc("hosts not to choose (e.g. the current one)")] = []
    preferHostUuid: Annotated[str | None, Doc("try this host first (e.g. the last one)")] = None
    strategy: Annotated[Strategy | None, Doc("host allocator strategy")] = None
    dryRun: Annotated[bool, Doc("choose a host without reserving anything")] = False
    reservationKey: Annotated[
        str | None, Doc("record the reservation under this key (released by it exactly once)")
    ] = None


@api(internal=True)
class ReserveHostCapacity(ApiMessage, kw_only=True):
    """Take capacity on a given host again, ignoring the ratios (undoing a release)."""

    hostUuid: Annotated[str, Doc("host UUID")]
    cpuNum: Annotated[int, Doc("vCPUs")]
    memorySize: Annotated[int, Doc("bytes of memory")]


@api(internal=True)
class ReleaseHostCapacity(ApiMessage, kw_only=True):
    """Give a VM's CPUs and memory back to a host (a no-op when the host is gone).

    With ``reservationKey``: what was reserved under that key, once (the other fields are
    ignored; a no-op when nothing is reserved under it any more)."""

    hostUuid: Annotated[str, Doc("host UUID")] = ""
    cpuNum: Annotated[int, Doc("vCPUs")] = 0
    memorySize: Annotated[int, Doc("bytes of memory")] = 0
    reservationKey: Annotated[str | None, Doc("release the reservation under this key")] = None


@api(internal=True)
class RepairHostCapacity(ApiMessage, kw_only=True):
    """Set a host's available CPUs and memory to ``expected`` only while they are still
    ``actual`` (compare and set: a repair that another node made, or a capacity change since
    the check that found the drift, leaves the row alone). Replies whether it was set."""

    hostUuid: Annotated[str, Doc("host UUID")]
    expected: Annotated[list[int], Doc("(vCPUs, bytes) available after the repair")]
    actual: Annotated[list[int], Doc("(vCPUs, bytes) available when the drift was seen")]


HypervisorOperation = Literal[
    "start",
    "stop",
    "reboot",
    "pause",
    "resume",
    "destroy",
    "migrate",
    "locate",  # is the VM on this host: {present, state}
    "attachVolume",
    "detachVolume",
    "attachNic",
    "detachNic",
    "takeSnapshot",
    "resizeVolume",
    "changeCpuMemory",
]


@api(internal=True)
class HypervisorOp(ApiMessage, kw_only=True):
    """Run a VM operation on a host through its host type's driver."""

    hostUuid: Annotated[str, Doc("host UUID")]
    op: Annotated[HypervisorOperation, Doc("operation")]
    vm: Annotated[dict[str, Any], Doc("VM inventory with vmNics and allVolumes")]
    args: Annotated[
        dict[str, Any],
        Doc(
            "targetHostUuid (migrate), volume, nic, type=cold (stop), maxCpuNum/maxMemorySize"
            " (start), volume+size (resizeVolume), cpuNum+memorySize (changeCpuMemory) ..."
        ),
    ] = {}


@api(internal=True)
class ApplySecurityGroupRules(ApiMessage, kw_only=True):
    """Put a NIC's security-group rules in place on its host (an empty list removes them)."""

    hostUuid: Annotated[str, Doc("host UUID")]
    vmNicUuid: Annotated[str, Doc("VmNic UUID")]
    rules: Annotated[list[dict[str, Any]], Doc("rules, as the security-group plugin makes them")]


@api(resource="Host", verb="inject-failure", admin=True)
class SimulatorInjectFailure(ApiMessage, kw_only=True):
    """Break the next operations of a simulator host (testing): fail, add latency, disconnect."""

    hostUuid: Annotated[str, Doc("simulator host UUID or name"), Ref("Host")]
    operation: Annotated[
        str | None,
        Doc(
            "VM operation (start, stop, reboot, pause, resume, destroy, migrate, attachVolume,"
            " detachVolume, attachNic, detachNic, takeSnapshot, resizeVolume, changeCpuMemory)"
            " or * for any; omit with"
            " disconnect=true to disconnect the host now"
        ),
    ] = None
    count: Annotated[int, Doc("how many operations it applies to")] = 1
    latency: Annotated[float, Doc("seconds each operation waits before answering")] = 0.0
    disconnect: Annotated[bool, Doc("the host drops off the network")] = False
    fail: Annotated[
        bool | None, Doc("make the operation fail (default: yes, unless only latency is given)")
    ] = None
    message: Annotated[str, Doc("error text")] = "injected failure"


@api(resource="Host", verb="clear-failures", admin=True)
class SimulatorClearFailures(ApiMessage, kw_only=True):
    """Remove the failures injected into simulator hosts (testing)."""


@api(resource="Host", verb="simulator-state", admin=True, mutating=False)
class GetSimulatorHostState(ApiMessage, kw_only=True):
    """What a simulator host runs: its VMs (state, size, volumes, NICs) and applied rules."""

    uuid: Annotated[str, Doc("simulator host UUID or name")]
