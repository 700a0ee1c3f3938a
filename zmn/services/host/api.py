from __future__ import annotations

from typing import Annotated, Any, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api


@api(resource="Host", verb="add", admin=True, long=True)
class AddSimulatorHost(CreateMessage, kw_only=True):
    """Add a simulated host (no agent; in-process) to a Simulator cluster."""

    name: Annotated[str, Doc("host name")]
    managementIp: Annotated[
        str, Doc("IP address or host name the node reaches the host at; unique")
    ]
    clusterUuid: Annotated[
        str, Doc("cluster UUID or name (hypervisorType=Simulator)"), Ref("Cluster")
    ]
    cpuCapacity: Annotated[int, Doc("number of vCPUs the simulated host offers")]
    memoryCapacity: Annotated[int, Doc("memory the simulated host offers, in bytes")]


@api(resource="Host", verb="update", admin=True)
class UpdateHost(ApiMessage, kw_only=True):
    """Rename a host, change its description or its management IP."""

    uuid: Annotated[str, Doc("host UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None
    managementIp: Annotated[
        str | None, Doc("new management IP; takes effect at the next reconnect")
    ] = None


@api(resource="Host", verb="delete", admin=True)
class DeleteHost(DeleteMessage, kw_only=True):
    """Delete a host and disconnect from it."""


@api(resource="Host", verb="change-state", admin=True, long=True)
class ChangeHostState(ApiMessage, kw_only=True):
    """Enable, disable or maintain a host (maintain moves it through PreMaintenance, migrating
    its running VMs away: a job with one step per VM)."""

    uuid: Annotated[str, Doc("host UUID or name")]
    stateEvent: Annotated[
        Literal["enable", "disable", "maintain"], Doc("enable, disable or maintain")
    ]


@api(resource="Host", verb="reconnect", admin=True, long=True)
class ReconnectHost(ApiMessage, kw_only=True):
    """Connect to a host again and resynchronise its capacity."""

    uuid: Annotated[str, Doc("host UUID or name")]


@api(internal=True)
class AddHost(CreateMessage, kw_only=True):
    """Run the ``host-add`` chain for a host type that lives in a plugin (e.g. KVM).

    The plugin's own API (``AddKvmHost``) validates its parameters and sends this;
    ``params`` go to the host type's ``connect`` (they may hold credentials: never logged).
    """

    name: Annotated[str, Doc("host name")]
    managementIp: Annotated[str, Doc("IP address or host name the node reaches the host at")]
    clusterUuid: Annotated[str, Doc("cluster UUID (its hypervisorType must be the host's)")]
    hypervisorType: Annotated[str, Doc("host type, as registered (e.g. KVM)")]
    params: Annotated[dict[str, Any], Doc("type-specific connect parameters")] = {}
