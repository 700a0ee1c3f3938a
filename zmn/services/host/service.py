"""Hosts: add (through the ``host-add`` chain), connect, track, maintain, delete.

Hypervisors are reached only through :class:`~zmn.services.host.hosttype.HostType`; the
simulator type is built in and other types plug in as extensions.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidArgument
from zmn.core import crud, links
from zmn.core.consistency import ConsistencyCheck
from zmn.core.db import new_uuid
from zmn.core.flow import FlowContext
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.services.host.api import (
    AddHost,
    AddSimulatorHost,
    ChangeHostState,
    DeleteHost,
    ReconnectHost,
    UpdateHost,
)
from zmn.services.host.flows import HOST_ADD_CHAIN, HOST_ADD_FLOWS, check_unique_ip, recover
from zmn.services.host.hosttype import HostMaintenanceExtension, HostTypeRegistry
from zmn.services.host.models import HostVO
from zmn.services.host.ops import RESERVED_MEMORY, host_ref, load_ref, reconnect
from zmn.services.host.simulator import SimulatorHostType, SimulatorHypervisor
from zmn.services.host.states import HOST_STATE, HOST_STATUS
from zmn.services.host.tracker import HostTracker
from zmn.services.host.vmops import HostCapacityConsistency, HostVmHandlers

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.host")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def check_management_ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if value.replace(".", "").isdigit() or not _HOSTNAME.match(value):
        raise InvalidArgument(
            f"managementIp: {value!r} is neither an IP address nor a host name",
            code="HOST.INVALID_MANAGEMENT_IP",
            field="managementIp",
        )


class HostService(HostVmHandlers, Service):
    name = "host"
    summary = "hypervisor hosts"
    requires = ("zone", "cluster")
    state_machines = [HOST_STATE, HOST_STATUS]
    global_configs = [
        GlobalConfigDef(
            "host", "ping.interval", 60, "int", "seconds between pings of each host", min=1
        ),
        GlobalConfigDef(
            "host",
            "ping.maxFailure",
            3,
            "int",
            "missed pings in a row before a host is Disconnected",
            min=1,
        ),
        GlobalConfigDef(
            "host",
            "connection.parallelism",
            10,
            "int",
            "hosts connected or pinged at the same time",
            min=1,
        ),
        GlobalConfigDef(
            "host",
            "cpu.overProvisioning.ratio",
            10.0,
            "float",
            "vCPUs placed on a host may reach its vCPUs times this",
            min=0.1,
        ),
        GlobalConfigDef(
            "host",
            "memory.overProvisioning.ratio",
            1.0,
            "float",
            "memory placed on a host may reach its memory times this",
            min=0.1,
        ),
        GlobalConfigDef(
            "host",
            "vmOperation.parallelism",
            10,
            "int",
            "VM operations (start, stop, migrate ...) run at the same time on one host",
            min=1,
        ),
        GlobalConfigDef(
            "host",
            "allocator.strategy",
            "default",
            "string",
            "how a host is chosen when the offering does not say: default (first by name),"
            " least-used (most free memory) or random",
            choices=("default", "least-used", "random"),
        ),
    ]
    tag_patterns = [RESERVED_MEMORY]
    error_codes = {
        "HOST.NOT_FOUND": "no host with that UUID or name",
        "HOST.DUPLICATE_NAME": "a host with that name exists",
        "HOST.DUPLICATE_IP": "a host with that management IP exists",
        "HOST.INVALID_MANAGEMENT_IP": "the management IP is neither an IP address nor a host name",
        "HOST.INVALID_CAPACITY": "CPU and memory capacities must be positive",
        "HOST.HYPERVISOR_MISMATCH": "the cluster's hypervisor type is not the host's",
        "HOST.UNKNOWN_TYPE": "no host type of that hypervisor is installed",
        "HOST.CONNECT_FAILED": "the host could not be reached; the add was rolled back",
        "HOST.INVALID_STATE": "the state event or operation is not allowed in the host's state",
        "HOST_STATUS.INVALID_STATE": "the connection event is not allowed in the host's status",
        "HOST.HAS_DEPENDENTS": "resources (e.g. VMs) still live on the host",
        "SIMULATOR.INJECTED_FAILURE": "a failure injected into the simulator (tests)",
        "SIMULATOR.DISCONNECTED": "the simulated host dropped off during the operation (tests)",
        "SIMULATOR.BAD_VM_STATE": "the simulated VM is not in a state for the operation",
        "SIMULATOR.NO_VM": "the simulated host does not run that VM",
        "HOST.ALLOCATION_FAILED": "no host passes the filters (details.filter names which)",
        "HOST.NOT_CONNECTED": "the host is not Connected; VM operations on it are refused",
        "HOST.OPERATION_UNSUPPORTED": "the host type cannot run VM operations",
        "HOST.NOT_SIMULATOR": "the simulator APIs act on simulator hosts only",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.simulator = SimulatorHypervisor()
        self.types = HostTypeRegistry(node.extensions)
        self.types.add(SimulatorHostType(self.simulator))
        self.tracker = HostTracker(node, self.types)
        node.flows.add_chain(HOST_ADD_CHAIN, HOST_ADD_FLOWS)
        node.extensions.add(ConsistencyCheck, HostCapacityConsistency(node))  # type: ignore[type-abstract]

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Host",
                HostVO,
                self.name,
                "host",
                columns=[
                    "uuid",
                    "name",
                    "managementIp",
                    "clusterUuid",
                    "hypervisorType",
                    "state",
                    "status",
                ],
                refs={
                    "zoneUuid": RefSpec("Zone", on_delete="cascade"),
                    "clusterUuid": RefSpec("Cluster", on_delete="cascade"),
                },
                enums={
                    "state": sorted(HOST_STATE.states),
                    "status": sorted(HOST_STATUS.states),
                    "hypervisorType": ["Simulator", "KVM"],
                },
                docs={
                    "totalCpuCapacity": "vCPUs the host offers",
                    "availableCpuCapacity": "vCPUs not yet given to VMs",
                    "totalMemoryCapacity": "bytes of memory the host offers",
                    "availableMemoryCapacity": "bytes of memory not yet given to VMs",
                },
                admin_only=True,
                state_field="state",
                summary="a hypervisor host",
            )
        )

    async def start(self) -> None:
        try:  # before the tracker: a rolled-back host must not be reconnected
            settled = await recover(self.node, self.types)
            if settled:
                log.warning("settled %d interrupted host add(s)", len(settled))
        except Exception:  # a failed recovery must not keep the node down
            log.exception("recovering interrupted host adds failed")
        self.tracker.start()

    async def stop(self) -> None:
        await self.tracker.stop()

    # ----------------------------------------------------------------- add

    @handler(AddSimulatorHost)
    async def add_simulator_host(self, msg: AddSimulatorHost, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Host", msg)
        if existing is not None:
            return {"inventory": existing}
        check_management_ip(msg.managementIp)
        for field, value in (
            ("cpuCapacity", msg.cpuCapacity),
            ("memoryCapacity", msg.memoryCapacity),
        ):
            if value <= 0:
                raise InvalidArgument(
                    f"{field} must be a positive number, got {value}",
                    code="HOST.INVALID_CAPACITY",
                    field=field,
                )
        params = {"cpuCapacity": msg.cpuCapacity, "memoryCapacity": msg.memoryCapacity}
        return await self.add_host(call, msg, "Simulator", params)

    @handler(AddHost)
    async def add_host_of_type(self, msg: AddHost, call: Call) -> dict[str, Any]:
        """The ``host-add`` chain for a plugin's host type (sent by e.g. ``AddKvmHost``)."""
        existing = crud.existing_inventory(call, "Host", msg)
        if existing is not None:
            return {"inventory": existing}
        check_management_ip(msg.managementIp)
        return await self.add_host(call, msg, msg.hypervisorType, dict(msg.params))

    async def add_host(
        self, call: Call, msg: Any, hypervisor_type: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Run the ``host-add`` chain for any host type.

        ``msg`` has ``name``, ``managementIp``, ``clusterUuid`` and the create fields.
        """
        self.types.get(hypervisor_type)
        with call.tx() as s:
            cluster = links.row_of(call, s, "Cluster", msg.clusterUuid, "clusterUuid")
            if cluster.hypervisorType != hypervisor_type:
                raise InvalidArgument(
                    f"clusterUuid: cluster {cluster.name} is a {cluster.hypervisorType} cluster;"
                    f" a {hypervisor_type} host cannot join it",
                    code="HOST.HYPERVISOR_MISMATCH",
                    field="clusterUuid",
                )
            zone_uuid = cluster.zoneUuid
        uuid = msg.resourceUuid or new_uuid()
        ctx = FlowContext(
            call,
            data={
                "hostUuid": uuid,
                "name": msg.name,
                "managementIp": msg.managementIp,
                "clusterUuid": msg.clusterUuid,
                "zoneUuid": zone_uuid,
                "hypervisorType": hypervisor_type,
            },
            scratch={"msg": msg, "params": params, "types": self.types},
        )
        async with self.node.queues.slot(f"host:{uuid}", 1, "add"):
            await self.node.flows.chain(HOST_ADD_CHAIN).run(ctx)
        rt = self.node.resources.get("Host")
        with call.tx() as s:
            inv = rt.inventories(s, [crud.get_row(s, rt, uuid)])[0]
        await call.publish("/host/created", {"resourceType": "Host", "inventory": inv})
        return {"inventory": inv}

    # ----------------------------------------------------------------- update, state

    @handler(UpdateHost)
    async def update_host(self, msg: UpdateHost, call: Call) -> dict[str, Any]:
        links.check_rename(call, "Host", msg.uuid, msg.name)
        if msg.managementIp is not None:
            check_management_ip(msg.managementIp)
            with call.tx() as s:
                check_unique_ip(s, msg.managementIp, exclude=msg.uuid)
        return await crud.update_fields(
            call,
            "Host",
            msg.uuid,
            {"name": msg.name, "description": msg.description, "managementIp": msg.managementIp},
        )

    @handler(ChangeHostState)
    async def change_host_state(self, msg: ChangeHostState, call: Call) -> dict[str, Any]:
        if msg.stateEvent != "maintain":
            return await crud.change_state(call, "Host", msg.uuid, msg.stateEvent, HOST_STATE)
        with call.tx() as s:
            before = crud.get_row(s, self.node.resources.get("Host"), msg.uuid).state
        if before == "Maintenance":
            return await crud.change_state(call, "Host", msg.uuid, "maintain", HOST_STATE)
        if before != "PreMaintenance":
            await crud.change_state(call, "Host", msg.uuid, "preMaintain", HOST_STATE)
        try:
            for ext in self.node.extensions.all(HostMaintenanceExtension):  # type: ignore[type-abstract]
                await ext.prepare_maintenance(call, msg.uuid)
        except Exception:
            back = "disable" if before == "Disabled" else "enable"
            await crud.change_state(call, "Host", msg.uuid, back, HOST_STATE)
            raise
        return await crud.change_state(call, "Host", msg.uuid, "maintain", HOST_STATE)

    @handler(ReconnectHost)
    async def reconnect_host(self, msg: ReconnectHost, call: Call) -> dict[str, Any]:
        async with self.node.queues.slot(f"host:{msg.uuid}", 1, "reconnect"):
            with call.tx() as s:
                row = crud.get_row(s, self.node.resources.get("Host"), msg.uuid)
                HOST_STATE.check(row.uuid, row.state, "reconnect")
                ref = host_ref(row)
            await reconnect(call, self.types.get(ref.hypervisorType), ref)
            self.tracker.misses.pop(ref.uuid, None)
        rt = self.node.resources.get("Host")
        with call.tx() as s:
            return {"inventory": rt.inventories(s, [crud.get_row(s, rt, msg.uuid)])[0]}

    # ----------------------------------------------------------------- delete

    @handler(DeleteHost)
    async def delete_host(self, msg: DeleteHost, call: Call) -> dict[str, Any]:
        ref = load_ref(call, msg.uuid)
        result = await crud.delete(call, "Host", msg.uuid, cascade=msg.cascade)
        self.tracker.misses.pop(ref.uuid, None)
        try:
            await self.types.get(ref.hypervisorType).disconnect(ref)
        except Exception:  # the host is gone from the database either way
            log.warning(
                "could not disconnect deleted host %s (%s)",
                ref.name,
                ref.managementIp,
                exc_info=True,
            )
        return result
