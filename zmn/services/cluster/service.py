"""Clusters: hosts of one hypervisor type in one zone."""

from __future__ import annotations

from typing import Any

from zmn.core import crud, links
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.services.cluster.api import ChangeClusterState, CreateCluster, DeleteCluster, UpdateCluster
from zmn.services.cluster.models import ClusterVO

CLUSTER_STATE = StateMachine(
    "Cluster",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
)


class ClusterService(Service):
    name = "cluster"
    summary = "clusters"
    requires = ("zone",)
    state_machines = [CLUSTER_STATE]
    error_codes = {
        "CLUSTER.NOT_FOUND": "no cluster with that UUID or name",
        "CLUSTER.DUPLICATE_NAME": "a cluster with that name exists",
        "CLUSTER.HAS_DEPENDENTS": "the cluster still has hosts",
        "CLUSTER.INVALID_STATE": "the state event is not allowed in the cluster's state",
    }

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Cluster",
                ClusterVO,
                self.name,
                "cluster",
                columns=["uuid", "name", "zoneUuid", "hypervisorType", "state"],
                refs={"zoneUuid": RefSpec("Zone", on_delete="cascade")},
                enums={
                    "state": ["Enabled", "Disabled"],
                    "hypervisorType": ["Simulator", "KVM"],
                    "type": ["zstack"],
                },
                docs={"hypervisorType": "hypervisor of every host in the cluster"},
                admin_only=True,
                state_field="state",
                summary="hosts of one hypervisor type sharing storage and networks",
            )
        )

    @handler(CreateCluster)
    async def create_cluster(self, msg: CreateCluster, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("Cluster")
        row = ClusterVO(
            name=msg.name,
            zoneUuid=msg.zoneUuid,
            hypervisorType=msg.hypervisorType,
            type=msg.type,
            state="Enabled",
        )
        return await crud.create(
            call, "Cluster", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(UpdateCluster)
    async def update_cluster(self, msg: UpdateCluster, call: Call) -> dict[str, Any]:
        links.check_rename(call, "Cluster", msg.uuid, msg.name)
        return await crud.update_fields(
            call, "Cluster", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(ChangeClusterState)
    async def change_cluster_state(self, msg: ChangeClusterState, call: Call) -> dict[str, Any]:
        return await crud.change_state(call, "Cluster", msg.uuid, msg.stateEvent, CLUSTER_STATE)

    @handler(DeleteCluster)
    async def delete_cluster(self, msg: DeleteCluster, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "Cluster", msg.uuid, cascade=msg.cascade)
