from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.limits import BYTES_MAX, Range
from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, api

MiB = 1024**2
SIZE_CODE = "INSTANCE_OFFERING.INVALID_SIZE"

HostAllocator = Literal[
    "DefaultHostAllocatorStrategy",
    "LastHostPreferredAllocatorStrategy",
    "LeastVmPreferredHostAllocatorStrategy",
    "MinimumCPUUsageHostAllocatorStrategy",
    "MinimumMemoryUsageHostAllocatorStrategy",
]
StateEvent = Annotated[Literal["enable", "disable"], Doc("enable or disable")]


@api(resource="InstanceOffering", verb="create", admin=True)
class CreateInstanceOffering(CreateMessage, kw_only=True):
    """Create an instance offering: the vCPUs and memory of a VM."""

    name: Annotated[str, Doc("offering name")]
    cpuNum: Annotated[int, Doc("number of vCPUs"), Range(1, 1024, SIZE_CODE)]
    memorySize: Annotated[
        int, Doc("memory in bytes (at least 16 MiB)"), Range(16 * MiB, 2**50, SIZE_CODE)
    ]
    cpuSpeed: Annotated[
        int, Doc("CPU speed in MHz (informational)"), Range(0, 1_000_000, SIZE_CODE)
    ] = 0
    allocatorStrategy: Annotated[HostAllocator, Doc("how a host is chosen")] = (
        "DefaultHostAllocatorStrategy"
    )
    sortKey: Annotated[int, Doc("order in lists")] = 0
    type: Annotated[Literal["UserVm"], Doc("offering type")] = "UserVm"


@api(resource="InstanceOffering", verb="update", admin=True)
class UpdateInstanceOffering(ApiMessage, kw_only=True):
    """Rename an instance offering or change its description."""

    uuid: Annotated[str, Doc("offering UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None
    sortKey: Annotated[int | None, Doc("new order in lists")] = None


@api(resource="InstanceOffering", verb="delete", admin=True)
class DeleteInstanceOffering(DeleteMessage, kw_only=True):
    """Delete an instance offering (VMs made from it keep their size)."""


@api(resource="InstanceOffering", verb="change-state", admin=True)
class ChangeInstanceOfferingState(ApiMessage, kw_only=True):
    """Enable or disable an instance offering (a disabled one makes no new VMs)."""

    uuid: Annotated[str, Doc("offering UUID or name")]
    stateEvent: StateEvent


@api(resource="DiskOffering", verb="create", admin=True)
class CreateDiskOffering(CreateMessage, kw_only=True):
    """Create a disk offering: the size of a data volume."""

    name: Annotated[str, Doc("offering name")]
    diskSize: Annotated[
        int,
        Doc("volume size in bytes (at least 1 MiB)"),
        Range(MiB, BYTES_MAX, "DISK_OFFERING.INVALID_SIZE"),
    ]
    allocatorStrategy: Annotated[
        Literal["DefaultPrimaryStorageAllocationStrategy"], Doc("how primary storage is chosen")
    ] = "DefaultPrimaryStorageAllocationStrategy"
    sortKey: Annotated[int, Doc("order in lists")] = 0


@api(resource="DiskOffering", verb="update", admin=True)
class UpdateDiskOffering(ApiMessage, kw_only=True):
    """Rename a disk offering or change its description."""

    uuid: Annotated[str, Doc("offering UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None
    sortKey: Annotated[int | None, Doc("new order in lists")] = None


@api(resource="DiskOffering", verb="delete", admin=True)
class DeleteDiskOffering(DeleteMessage, kw_only=True):
    """Delete a disk offering (volumes made from it keep their size)."""


@api(resource="DiskOffering", verb="change-state", admin=True)
class ChangeDiskOfferingState(ApiMessage, kw_only=True):
    """Enable or disable a disk offering (a disabled one makes no new volumes)."""

    uuid: Annotated[str, Doc("offering UUID or name")]
    stateEvent: StateEvent
