"""The host side of the VM life cycle: allocation, capacity, hypervisor operations, simulator.

Hypervisor operations on one host run at most ``host/vmOperation.parallelism`` at a time
(task queue ``host-vm:<uuid>``). A host that is not Connected refuses them with Unavailable.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session as SnapshotSession

from zmn.api.errors import InvalidArgument, OperationFailed, Unavailable, ZmnError, not_found
from zmn.core import crud, reservations
from zmn.core.consistency import Violation
from zmn.core.models import ReservationVO
from zmn.core.service import Call, handler
from zmn.services.host.allocator import SELECT_HOST, STRATEGIES, allocate
from zmn.services.host.hosttype import HostTypeRegistry, HypervisorDriver, drives_vms
from zmn.services.host.models import HostVO
from zmn.services.host.ops import host_ref, reserved_memory, set_status
from zmn.services.host.placed import placed_usage
from zmn.services.host.simulator import FailurePlan, SimulatorHypervisor
from zmn.services.host.vmapi import (
    AllocateHost,
    ApplySecurityGroupRules,
    GetSimulatorHostState,
    HypervisorOp,
    ReleaseHostCapacity,
    RepairHostCapacity,
    ReserveHostCapacity,
    SimulatorClearFailures,
    SimulatorInjectFailure,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


log = logging.getLogger("zmn.host.vmops")


def _held_here(driver: Any, host_uuid: str) -> bool:
    """Whether this node holds the host's connection (for the in-process simulator: its record);
    True for host types that do not say."""
    records = getattr(getattr(driver, "hypervisor", None), "hosts", None)
    return not isinstance(records, dict) or host_uuid in records


class HostCapacityConsistency:
    """Each host's available capacity is its total minus what the placed VMs take.

    Read in one snapshot (on PostgreSQL, whose read-committed statements each see their own,
    a repeatable-read transaction of its own): a VM placed between the VM query and the host
    query is otherwise counted on one side only. A host that an open reservation holds (an
    operation between taking its capacity and placing or releasing: the ledger of
    :mod:`zmn.core.reservations`, read in the same snapshot) is reported ``inFlight``: its gap
    closes when the operation ends, and the reconciler does not repair it.
    """

    def __init__(self, node: Node) -> None:
        self.node = node

    def check_consistency(self, session: Session) -> list[Violation]:
        if self.node.db.backend != "postgresql":  # SQLite, MariaDB: a snapshot already
            return self._check(session)
        conn = self.node.db.engine.connect().execution_options(isolation_level="REPEATABLE READ")
        try:
            with SnapshotSession(bind=conn) as snapshot:
                return self._check(snapshot)
        finally:
            conn.close()

    def _check(self, session: Session) -> list[Violation]:
        usage = placed_usage(self.node, session)
        hosts = list(session.scalars(select(HostVO)))
        held = set(
            session.scalars(select(ReservationVO.targetUuid).where(ReservationVO.kind == "Host"))
        )
        out: list[Violation] = []
        for h in hosts:
            cpu, memory = usage.get(h.uuid, (0, 0))
            expected = (
                h.totalCpuCapacity - cpu,
                h.totalMemoryCapacity - reserved_memory(session, h.uuid) - memory,
            )
            actual = (h.availableCpuCapacity, h.availableMemoryCapacity)
            if expected != actual:
                violation = Violation(
                    check="host-capacity",
                    resourceType="Host",
                    uuid=h.uuid,
                    message=f"host {h.name}: available (cpu, memory) is {actual} but total"
                    f" minus placed VMs is {expected}",
                    expected=list(expected),
                    actual=list(actual),
                )
                if h.uuid in held:
                    violation["inFlight"] = True
                    violation["message"] += " (an operation in flight holds a reservation)"
                out.append(violation)
        return out


# host capacity columns and the reservation ledger's fields that hold them
_HOST_LEDGER = {"availableCpuCapacity": "cpuNum", "availableMemoryCapacity": "memorySize"}


def _amounts(cpu: int, memory: int) -> dict[str, int]:
    return {"availableCpuCapacity": cpu, "availableMemoryCapacity": memory}


class HostVmHandlers:
    node: Node
    types: HostTypeRegistry
    simulator: SimulatorHypervisor

    @handler(AllocateHost)
    async def allocate_host(self, msg: AllocateHost, call: Call) -> dict[str, Any]:
        name = msg.strategy or str(self.node.global_config.get("host", "allocator.strategy"))
        strategy = STRATEGIES.get(name, name)
        rt = self.node.resources.get("Host")
        with self.node.db.fast() as conn:  # the hot path of every VM create
            host = allocate(self.node, conn, msg, strategy)
            if msg.reservationKey and not msg.dryRun:  # same transaction as the UPDATE
                reservations.add(
                    conn,
                    msg.reservationKey,
                    "Host",
                    host.uuid,
                    cpuNum=msg.cpuNum,
                    memorySize=msg.memorySize,
                )
            if rt.inventory_hook is None:
                return {"host": rt.inventory(host)}
        with call.tx() as s:
            return {"host": rt.inventories(s, [s.get(rt.model, host.uuid)])[0]}

    @handler(ReserveHostCapacity)
    async def reserve_host_capacity(self, msg: ReserveHostCapacity, call: Call) -> dict[str, Any]:
        self._adjust(msg.hostUuid, -msg.cpuNum, -msg.memorySize)
        return {}

    @handler(RepairHostCapacity)
    async def repair_host_capacity(self, msg: RepairHostCapacity, call: Call) -> dict[str, Any]:
        if len(msg.expected) != 2 or len(msg.actual) != 2:
            raise InvalidArgument(
                "expected, actual: give (vCPUs, bytes) as two integers each", field="expected"
            )
        (cpu, memory), (was_cpu, was_memory) = msg.expected, msg.actual
        with self.node.db.engine.begin() as conn:
            done = conn.execute(
                update(HostVO)
                .where(
                    HostVO.uuid == msg.hostUuid,
                    HostVO.availableCpuCapacity == was_cpu,
                    HostVO.availableMemoryCapacity == was_memory,
                )
                .values(availableCpuCapacity=cpu, availableMemoryCapacity=memory)
            )
        return {"repaired": done.rowcount == 1}

    @handler(ReleaseHostCapacity)
    async def release_host_capacity(self, msg: ReleaseHostCapacity, call: Call) -> dict[str, Any]:
        reservations.release(
            self.node,
            msg.reservationKey,
            HostVO,
            msg.hostUuid,
            _amounts(msg.cpuNum, msg.memorySize),
            _HOST_LEDGER,
        )
        return {}

    def _adjust(self, host_uuid: str, cpu: int, memory: int) -> None:
        self.node.db_write(reservations.give_back(HostVO, host_uuid, _amounts(cpu, memory)))

    def _driver(self, call: Call, host_uuid: str) -> tuple[Any, HypervisorDriver]:
        with self.node.db.fast() as conn:  # every VM operation passes here
            row = conn.execute(SELECT_HOST, {"uuid": host_uuid}).first()
        if row is None:
            raise not_found("Host", host_uuid, "hostUuid")
        ref, status = host_ref(cast(Any, row)), row.status  # a Core row: the same fields
        if status != "Connected":
            raise Unavailable(
                f"host {ref.name} ({ref.managementIp}) is {status}; VM operations need it"
                " Connected",
                code="HOST.NOT_CONNECTED",
                hostUuid=host_uuid,
            )
        driver = self.types.get(ref.hypervisorType)
        if not drives_vms(driver):
            raise OperationFailed(
                f"host type {ref.hypervisorType} cannot run VM operations",
                code="HOST.OPERATION_UNSUPPORTED",
            )
        return ref, driver

    @handler(HypervisorOp)
    async def hypervisor_op(self, msg: HypervisorOp, call: Call) -> dict[str, Any]:
        ref, driver = self._driver(call, msg.hostUuid)
        level = int(self.node.global_config.get("host", "vmOperation.parallelism"))
        task = f"{msg.op} vm {msg.vm.get('uuid', '')}"
        for attempt in (1, 2):
            async with self.node.queues.slot(f"host-vm:{ref.uuid}", level, task):
                try:
                    return {"result": await driver.vm_op(ref, msg.op, msg.vm, msg.args)}
                except ZmnError as exc:
                    if exc.code == "SIMULATOR.NOT_CONNECTED" and not _held_here(driver, ref.uuid):
                        # not the host's fault: this node holds no connection to it (yet),
                        # e.g. it took the host over and its reconnect has not rebuilt the
                        # simulator's record. Marking the host Disconnected would undo that
                        # reconnect; connect it here (below) and try once more instead
                        if attempt == 2:
                            raise Unavailable(
                                f"host {ref.name} ({ref.managementIp}) is not connected to this"
                                " management node yet; try again",
                                code="HOST.NOT_CONNECTED",
                                hostUuid=ref.uuid,
                            ) from exc
                    elif exc.code in ("SIMULATOR.DISCONNECTED", "SIMULATOR.NOT_CONNECTED"):
                        await set_status(call, ref.uuid, "disconnected")
                        raise Unavailable(
                            f"host {ref.name} ({ref.managementIp}) disconnected: {exc.message}",
                            code="HOST.NOT_CONNECTED",
                            hostUuid=ref.uuid,
                        ) from exc
                    else:
                        raise
            log.info("host %s: not connected here for %s; reconnecting it", ref.uuid, task)
            reconnect_api: Any = self.node.apis.get("ReconnectHost")
            await call.call(reconnect_api(uuid=ref.uuid))
            ref, driver = self._driver(call, msg.hostUuid)
        raise AssertionError("unreachable")  # pragma: no cover

    @handler(ApplySecurityGroupRules)
    async def apply_security_group_rules(
        self, msg: ApplySecurityGroupRules, call: Call
    ) -> dict[str, Any]:
        ref, driver = self._driver(call, msg.hostUuid)
        await driver.apply_security_group_rules(ref, msg.vmNicUuid, msg.rules)
        return {}

    # ----------------------------------------------------------------- simulator (testing)

    def _simulated(self, call: Call, uuid: str) -> HostVO:
        with call.tx() as s:
            row: HostVO = crud.get_row(s, self.node.resources.get("Host"), uuid, "hostUuid")
        if row.hypervisorType != "Simulator":
            raise InvalidArgument(
                f"hostUuid: host {row.name} is a {row.hypervisorType} host, not a simulator",
                code="HOST.NOT_SIMULATOR",
                field="hostUuid",
            )
        return row

    @handler(SimulatorInjectFailure)
    async def simulator_inject_failure(
        self, msg: SimulatorInjectFailure, call: Call
    ) -> dict[str, Any]:
        row = self._simulated(call, msg.hostUuid)
        if msg.operation is None:
            if not msg.disconnect:
                raise InvalidArgument(
                    "operation: name the operation to break (or * for any), or pass"
                    " disconnect=true to disconnect the host now",
                    field="operation",
                )
            record = self.simulator.hosts.get(row.uuid)
            if record is not None:
                record.connected = False
            await set_status(call, row.uuid, "disconnected")
        else:
            fail = (
                msg.fail if msg.fail is not None else not (msg.latency > 0 and not msg.disconnect)
            )
            self.simulator.plans.append(
                FailurePlan(
                    row.uuid,
                    msg.operation,
                    max(1, msg.count),
                    max(0.0, msg.latency),
                    msg.disconnect,
                    fail,
                    msg.message,
                )
            )
        return {"plans": [vars(p) for p in self.simulator.plans]}

    @handler(SimulatorClearFailures)
    async def simulator_clear_failures(
        self, msg: SimulatorClearFailures, call: Call
    ) -> dict[str, Any]:
        self.simulator.clear()
        return {"plans": []}

    @handler(GetSimulatorHostState)
    async def get_simulator_host_state(
        self, msg: GetSimulatorHostState, call: Call
    ) -> dict[str, Any]:
        row = self._simulated(call, msg.uuid)
        record = self.simulator.hosts.get(row.uuid)
        if record is None:
            return {"host": {"uuid": row.uuid, "connected": False, "vms": {}, "rules": {}}}
        return {
            "host": {
                "uuid": row.uuid,
                "connected": record.connected,
                "usedCpu": record.used_cpu,
                "usedMemory": record.used_memory,
                "vms": {
                    u: {
                        "state": v.state,
                        "cpuNum": v.cpuNum,
                        "memorySize": v.memorySize,
                        "volumes": dict(v.volumes),
                        "nics": dict(v.nics),
                        "snapshots": list(v.snapshots),
                    }
                    for u, v in record.vms.items()
                },
                # held here and vanished without an operation: gone from the host
                "gone": sorted(record.seen - record.vms.keys()),
                "rules": {k: list(v) for k, v in record.rules.items()},
                "plans": [vars(p) for p in self.simulator.plans if p.host in ("", row.uuid)],
            }
        }
