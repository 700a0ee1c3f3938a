"""The management service: the node's own status, statistics, queues, flows and catalogue."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from zmn.api.errors import InvalidArgument, PermissionDenied
from zmn.core.catalogue import build_catalogue, catalogue_hash
from zmn.core.cluster import Cluster, ring_shares
from zmn.core.consistency import ConsistencyCheck, Violation
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

# What a normal account sees of the node: enough to tell it is up and which version it runs.
# Database URLs, paths, pids, endpoints, plugin errors, ring members and per-API counts (which
# tell what other tenants do) are for admins only.
TENANT_STATUS = ("version", "uptimeSeconds", "stopping")
TENANT_STATS = ("apiRatePerSecond", "p50ms", "p95ms", "p99ms")


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
                inventory_hook=self._ring_fields,
                summary="a management node process",
            )
        )

    async def start(self) -> None:
        # Heartbeats on the database clock, the ring, takeover and fencing: zmn.core.cluster.
        self.cluster = Cluster(self.node)
        await self.cluster.start()

    async def stop(self) -> None:
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            await cluster.stop()

    def _ring_fields(self, session: Session, invs: list[dict[str, Any]]) -> None:
        """Add ``onRing`` and ``ringShare`` (fraction of resources owned) as this node sees them."""
        cluster = getattr(self, "cluster", None)
        shares = ring_shares(cluster.ring) if cluster is not None else {}
        for inv in invs:
            inv["onRing"] = inv["uuid"] in shares
            inv["ringShare"] = round(shares.get(inv["uuid"], 0.0), 4)

    @handler(Ping)
    async def ping(self, msg: Ping, call: Call) -> dict[str, Any]:
        return {"pong": True, "node": self.node.uuid, "version": self.node.version}

    @handler(GetApiCatalogue)
    async def get_catalogue(self, msg: GetApiCatalogue, call: Call) -> dict[str, Any]:
        catalogue = build_catalogue(self.node)
        return {"catalogue": catalogue, "hash": catalogue_hash(catalogue)}

    @handler(GetManagementNodeStatus)
    async def get_status(self, msg: GetManagementNodeStatus, call: Call) -> dict[str, Any]:
        status = self.node.status()
        if not call.principal.is_admin:
            return {k: status[k] for k in TENANT_STATUS} | {"adminView": False}
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            status["ring"] = cluster.describe()
        tracker = getattr(self.node.services.get("host"), "tracker", None)
        if tracker is not None:  # the host tracker's boot and last ping round
            status["hostTracking"] = tracker.describe()
        return status

    @handler(GetManagementNodeStats)
    async def get_stats(self, msg: GetManagementNodeStats, call: Call) -> dict[str, Any]:
        snapshot = self.node.stats.snapshot()
        if not call.principal.is_admin:
            return {k: snapshot[k] for k in TENANT_STATS} | {"adminView": False}
        return {
            **snapshot,
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
