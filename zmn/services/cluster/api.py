from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api

HypervisorType = Literal["Simulator", "KVM"]


@api(resource="Cluster", verb="create", admin=True)
class CreateCluster(CreateMessage, kw_only=True):
    """Create a cluster: hosts of one hypervisor type sharing primary storage and L2 networks."""

    name: Annotated[str, Doc("cluster name")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
    hypervisorType: Annotated[HypervisorType, Doc("hypervisor of every host in the cluster")]
    type: Annotated[Literal["zstack"], Doc("cluster type")] = "zstack"


@api(resource="Cluster", verb="update", admin=True)
class UpdateCluster(ApiMessage, kw_only=True):
    """Rename a cluster or change its description."""

    uuid: Annotated[str, Doc("cluster UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="Cluster", verb="delete", admin=True)
class DeleteCluster(DeleteMessage, kw_only=True):
    """Delete a cluster; refused while it has hosts unless cascade=true."""


@api(resource="Cluster", verb="change-state", admin=True)
class ChangeClusterState(ApiMessage, kw_only=True):
    """Enable or disable a cluster (a disabled cluster takes no new VMs)."""

    uuid: Annotated[str, Doc("cluster UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]
