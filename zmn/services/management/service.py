"""The management service: the node's own status, statistics, queues, flows and catalogue."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from sqlalchemy import update

from zmn.api.errors import InvalidArgument, PermissionDenied
from zmn.core.catalogue import build_catalogue, catalogue_hash
from zmn.core.consistency import ConsistencyCheck, Violation
from zmn.core.db import utcnow
from zmn.core.flow import FaultPlan
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.models import ManagementNodeVO
from zmn.core.resource import ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.services.management.api import (
    CheckConsistency,
    ClearFlowFaults,
    GetApiCatalogue,
    GetFlowChains,
    GetManagementNodeStats,
    GetManagementNodeStatus,
    GetTaskQueues,
    InjectFlowFault,
    Ping,
    Subscribe,
    Unsubscribe,
)

log = logging.getLogger("zmn.management")


class ManagementService(Service):
    name = "management"
    summary = "management nodes, status, statistics"
    global_configs = [
        GlobalConfigDef(
            "managementNode", "heartbeat.interval", 2, "int", "seconds between heartbeats", min=1
        ),
        GlobalConfigDef(
            "managementNode", "heartbeat.maxMissed", 5, "int", "missed beats before eviction", min=1
        ),
    ]

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "ManagementNode",
                ManagementNodeVO,
                self.name,
                "management-node",
                columns=["uuid", "name", "hostName", "state", "version", "heartbeat"],
                enums={"state": ["Running", "Stopped", "Evicted"]},
                admin_only=True,
                summary="a management node process",
            )
        )

    async def start(self) -> None:
        node = self.node
        with node.db.tx() as s:
            row = s.get(ManagementNodeVO, node.uuid)
            if row is None:
                row = ManagementNodeVO(uuid=node.uuid)
                s.add(row)
            row.name = node.config.node_name
            row.hostName = socket.gethostname()
            row.pid = os.getpid()
            row.state = "Running"
            row.version = node.version
            row.endpoints = ",".join(node.endpoints)
            row.heartbeat = utcnow()
        self._beat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.node.global_config.get("managementNode", "heartbeat.interval"))
            try:
                self.node.db_write(
                    update(ManagementNodeVO)
                    .where(ManagementNodeVO.uuid == self.node.uuid)
                    .values(heartbeat=utcnow(), endpoints=",".join(self.node.endpoints))
                )
            except Exception:
                log.exception("heartbeat failed")

    async def stop(self) -> None:
        task = getattr(self, "_beat_task", None)
        if task is not None:
            task.cancel()
        try:
            self.node.db_write(
                update(ManagementNodeVO)
                .where(ManagementNodeVO.uuid == self.node.uuid)
                .values(state="Stopped")
            )
        except Exception:
            log.exception("could not record the node as stopped")

    @handler(Ping)
    async def ping(self, msg: Ping, call: Call) -> dict[str, Any]:
        return {"pong": True, "node": self.node.uuid, "version": self.node.version}

    @handler(GetApiCatalogue)
    async def get_catalogue(self, msg: GetApiCatalogue, call: Call) -> dict[str, Any]:
        catalogue = build_catalogue(self.node)
        return {"catalogue": catalogue, "hash": catalogue_hash(catalogue)}

    @handler(GetManagementNodeStatus)
    async def get_status(self, msg: GetManagementNodeStatus, call: Call) -> dict[str, Any]:
        return self.node.status()

    @handler(GetManagementNodeStats)
    async def get_stats(self, msg: GetManagementNodeStats, call: Call) -> dict[str, Any]:
        return {
            **self.node.stats.snapshot(),
            "bus": self.node.bus.stats(),
            "jobsInFlight": self.node.jobs.in_flight,
            "jobsFinished": self.node.jobs.finished,
            "queueDepth": self.node.queues.depth(),
            "queues": len(self.node.queues.snapshot()),
        }

    @handler(GetTaskQueues)
    async def get_task_queues(self, msg: GetTaskQueues, call: Call) -> dict[str, Any]:
        return {"queues": self.node.queues.snapshot()}

    @handler(GetFlowChains)
    async def get_flow_chains(self, msg: GetFlowChains, call: Call) -> dict[str, Any]:
        return {"chains": self.node.flows.describe()}

    @handler(Subscribe)
    async def subscribe(self, msg: Subscribe, call: Call) -> dict[str, Any]:
        raise InvalidArgument("Subscribe acts on a client connection; send it over the API socket")

    @handler(Unsubscribe)
    async def unsubscribe(self, msg: Unsubscribe, call: Call) -> dict[str, Any]:
        raise InvalidArgument(
            "Unsubscribe acts on a client connection; send it over the API socket"
        )

    @handler(CheckConsistency)
    async def check_consistency(self, msg: CheckConsistency, call: Call) -> dict[str, Any]:
        violations: list[Violation] = []
        with self.node.db.session() as session:
            for checker in self.node.extensions.all(ConsistencyCheck):  # type: ignore[type-abstract]
                violations.extend(checker.check_consistency(session))
        return {"violations": violations}

    def _faults_enabled(self) -> None:
        if self.node.config.get("testing.faults") != "true":
            raise PermissionDenied(
                "flow fault injection is for testing: set testing.faults=true in zmn.conf",
                code="TEST.FAULTS_DISABLED",
            )

    @handler(InjectFlowFault)
    async def inject_flow_fault(self, msg: InjectFlowFault, call: Call) -> dict[str, Any]:
        self._faults_enabled()
        known = self.node.flows.flows
        if msg.flow not in known:
            raise InvalidArgument(
                f"no flow named {msg.flow!r} (flows: {', '.join(sorted(known))})", field="flow"
            )
        if msg.chain != "*" and msg.chain not in self.node.flows.chains:
            raise InvalidArgument(
                f"no flow chain named {msg.chain!r} (chains: {', '.join(sorted(self.node.flows.chains))})",
                field="chain",
            )
        self.node.flows.faults.append(FaultPlan(msg.chain, msg.flow, msg.count, msg.when))
        return {"faults": [vars(f) for f in self.node.flows.faults]}

    @handler(ClearFlowFaults)
    async def clear_flow_faults(self, msg: ClearFlowFaults, call: Call) -> dict[str, Any]:
        self._faults_enabled()
        self.node.flows.faults.clear()
        return {"faults": []}
