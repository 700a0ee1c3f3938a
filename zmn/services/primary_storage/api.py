from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api


@api(resource="PrimaryStorage", verb="add", admin=True)
class AddSimulatorPrimaryStorage(CreateMessage, kw_only=True):
    """Add a simulated primary storage (capacity bookkeeping only) to a zone."""

    name: Annotated[str, Doc("primary storage name")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
    url: Annotated[str, Doc("where the storage is, e.g. /sim/ps")]
    totalCapacity: Annotated[int, Doc("total capacity in bytes")]
    availableCapacity: Annotated[
        int | None, Doc("free capacity in bytes (default: totalCapacity)")
    ] = None


@api(resource="PrimaryStorage", verb="update", admin=True)
class UpdatePrimaryStorage(ApiMessage, kw_only=True):
    """Rename a primary storage or change its description."""

    uuid: Annotated[str, Doc("primary storage UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="PrimaryStorage", verb="delete", admin=True)
class DeletePrimaryStorage(DeleteMessage, kw_only=True):
    """Delete a primary storage (it is detached from its clusters first)."""


@api(resource="PrimaryStorage", verb="change-state", admin=True)
class ChangePrimaryStorageState(ApiMessage, kw_only=True):
    """Enable, disable or maintain a primary storage (no new volumes unless Enabled)."""

    uuid: Annotated[str, Doc("primary storage UUID or name")]
    stateEvent: Annotated[
        Literal["enable", "disable", "maintain"], Doc("enable, disable or maintain")
    ]


@api(resource="PrimaryStorage", verb="attach", admin=True)
class AttachPrimaryStorageToCluster(ApiMessage, kw_only=True):
    """Attach a primary storage to a cluster of the same zone."""

    primaryStorageUuid: Annotated[str, Doc("primary storage UUID or name"), Ref("PrimaryStorage")]
    clusterUuid: Annotated[str, Doc("cluster UUID or name"), Ref("Cluster")]


@api(resource="PrimaryStorage", verb="detach", admin=True)
class DetachPrimaryStorageFromCluster(ApiMessage, kw_only=True):
    """Detach a primary storage from a cluster."""

    primaryStorageUuid: Annotated[str, Doc("primary storage UUID or name"), Ref("PrimaryStorage")]
    clusterUuid: Annotated[str, Doc("cluster UUID or name"), Ref("Cluster")]


# ----------------------------------------------------------------------------- internal


@api(internal=True)
class AllocatePrimaryStorage(ApiMessage, kw_only=True):
    """Choose an enabled primary storage with room and take ``size`` bytes of it."""

    size: Annotated[int, Doc("bytes to reserve")]
    zoneUuid: Annotated[str | None, Doc("only storage of this zone")] = None
    clusterUuid: Annotated[str | None, Doc("only storage attached to this cluster")] = None
    primaryStorageUuid: Annotated[str | None, Doc("only this primary storage")] = None
    avoidPrimaryStorageUuids: Annotated[list[str], Doc("storage not to choose")] = []
    reservationKey: Annotated[
        str | None, Doc("record the reservation under this key (released by it exactly once)")
    ] = None


@api(internal=True)
class ReleasePrimaryStorageCapacity(ApiMessage, kw_only=True):
    """Give ``size`` bytes back to a primary storage (a no-op when it is gone).

    With ``reservationKey``: what was reserved under that key, once (the other fields are
    ignored; a no-op when nothing is reserved under it any more)."""

    primaryStorageUuid: Annotated[str, Doc("primary storage UUID")] = ""
    size: Annotated[int, Doc("bytes")] = 0
    reservationKey: Annotated[str | None, Doc("release the reservation under this key")] = None


@api(resource="PrimaryStorage", verb="add-local", admin=True)
class AddLocalPrimaryStorage(CreateMessage, kw_only=True):
    """Add a local primary storage: the directory ``url`` on every host of the clusters it is
    attached to. Its capacity is what the hosts' agents report for that directory."""

    name: Annotated[str, Doc("primary storage name")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
    url: Annotated[str, Doc("absolute directory on each host, e.g. /var/lib/zstack/local")]


@api(internal=True)
class SyncLocalStorage(ApiMessage, kw_only=True):
    """Ask the agents for the capacity of local storage directories and record it.

    ``hostUuid``: every local storage that host's cluster is attached to; ``primaryStorageUuid``:
    that storage on every connected host of its clusters; both: that pair.
    """

    hostUuid: Annotated[str | None, Doc("host UUID")] = None
    primaryStorageUuid: Annotated[str | None, Doc("primary storage UUID")] = None


@api(internal=True)
class PlaceLocalVolume(ApiMessage, kw_only=True):
    """The host a local-storage volume lives on; records ``hostUuid`` when it has none yet."""

    volumeUuid: Annotated[str, Doc("volume UUID")]
    primaryStorageUuid: Annotated[str, Doc("its primary storage")]
    hostUuid: Annotated[str, Doc("the host that would make it")]


@api(resource="PrimaryStorage", verb="add-shared-mount-point", admin=True)
class AddSharedMountPointPrimaryStorage(CreateMessage, kw_only=True):
    """Add a shared mount point primary storage: the directory ``url``, where the operator has
    mounted the same shared file system on every host of the clusters it is attached to. Each
    host's agent checks it sees the same directory (a marker file) before it is Connected."""

    name: Annotated[str, Doc("primary storage name")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
    url: Annotated[str, Doc("absolute directory mounted on every host, e.g. /mnt/shared")]


@api(resource="PrimaryStorage", verb="add-nfs", admin=True)
class AddNfsPrimaryStorage(CreateMessage, kw_only=True):
    """Add an NFS primary storage: each host's agent mounts ``url`` (with the options of the
    global config ``nfsPrimaryStorage/mount.options``) at the same path, then it is used like
    a shared mount point."""

    name: Annotated[str, Doc("primary storage name")]
    zoneUuid: Annotated[str, Doc("zone UUID or name"), Ref("Zone")]
    url: Annotated[str, Doc("the NFS export as HOST:/path, e.g. 192.168.0.5:/exports/zstack")]


@api(internal=True)
class SyncSharedStorage(ApiMessage, kw_only=True):
    """Check which hosts see shared primary storage (marker file) and record its capacity.

    ``hostUuid``: every shared storage that host's cluster is attached to;
    ``primaryStorageUuid``: that storage on every connected host of its clusters."""

    hostUuid: Annotated[str | None, Doc("host UUID")] = None
    primaryStorageUuid: Annotated[str | None, Doc("primary storage UUID")] = None


@api(internal=True)
class GetSharedStorageHost(ApiMessage, kw_only=True):
    """Whether ``hostUuid`` may use the shared storage (Connected), or why not; with no host,
    a Connected host of it (for work on a volume no VM runs)."""

    primaryStorageUuid: Annotated[str, Doc("primary storage UUID")]
    hostUuid: Annotated[str | None, Doc("host UUID")] = None


@api(resource="PrimaryStorage", verb="migrate-local-volume", admin=True, long=True)
class LocalStorageMigrateVolume(ApiMessage, kw_only=True):
    """Move a volume on local primary storage to another host's directory of the same storage
    (ZStack's name). A root volume takes its stopped VM along with all its volumes on local
    storage, and the VM's host becomes ``destHostUuid``; a data volume must be detached (or
    moved with its VM's root volume)."""

    volumeUuid: Annotated[str, Doc("volume UUID or name"), Ref("Volume")]
    destHostUuid: Annotated[str, Doc("the host to move it to (same cluster)"), Ref("Host")]
