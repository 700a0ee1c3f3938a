"""Volumes (root and data) and volume snapshots.

Root volumes are made and removed by the VM life cycle through internal messages; data
volumes have their own APIs. Capacity on primary storage is reserved and given back through
the primary-storage service's internal messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from zmn.core.consistency import ConsistencyCheck, Violation
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Service
from zmn.services.volume.data import VOLUME_STATE, DataVolumeHandlers
from zmn.services.volume.models import VolumeSnapshotVO, VolumeVO
from zmn.services.volume.snapshots import SnapshotHandlers
from zmn.services.volume.store import StoreHandlers

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node


class VolumeConsistency:
    """A volume attached to a VM names a VM that exists."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def check_consistency(self, session: Session) -> list[Violation]:
        rt = self.node.resources.types.get("VmInstance")
        if rt is None:
            return []
        rows = session.execute(
            select(VolumeVO.uuid, VolumeVO.vmInstanceUuid).where(
                VolumeVO.vmInstanceUuid.is_not(None),
                VolumeVO.vmInstanceUuid.not_in(select(rt.model.uuid)),
            )
        )
        return [
            Violation(
                check="volume-owned-by-vm",
                resourceType="Volume",
                uuid=uuid,
                message=f"volume {uuid} is attached to VM {vm}, which does not exist",
            )
            for uuid, vm in rows
        ]


class VolumeService(DataVolumeHandlers, SnapshotHandlers, StoreHandlers, Service):
    name = "volume"
    summary = "volumes and volume snapshots"
    requires = ("primaryStorage",)
    state_machines = [VOLUME_STATE]
    error_codes = {
        "VOLUME.NOT_FOUND": "no volume with that UUID or name",
        "VOLUME.INVALID_STATE": "the operation is not allowed in the volume's state or status",
        "VOLUME.NOT_DATA": "the operation is for data volumes; a root volume goes with its VM",
        "VOLUME.NO_SIZE": "give a disk offering or a diskSize",
        "VOLUME.ALREADY_ATTACHED": "the data volume is attached to a VM already",
        "VOLUME.NOT_ATTACHED": "the data volume is not attached to a VM",
        "VOLUME.UNREACHABLE": "the VM's cluster is not attached to the volume's primary storage",
        "VOLUME.ROOT_IN_USE": "a root volume goes with its VM",
        "VOLUME_SNAPSHOT.NOT_FOUND": "no snapshot with that UUID or name",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        node.extensions.add(ConsistencyCheck, VolumeConsistency(node))  # type: ignore[type-abstract]

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Volume",
                VolumeVO,
                self.name,
                "volume",
                columns=["uuid", "name", "type", "size", "status", "vmInstanceUuid", "deviceId"],
                refs={
                    "primaryStorageUuid": RefSpec("PrimaryStorage", on_delete="cascade"),
                    "vmInstanceUuid": RefSpec("VmInstance", on_delete="keep", reverse="allVolumes"),
                    "diskOfferingUuid": RefSpec("DiskOffering", on_delete="detach"),
                    "rootImageUuid": RefSpec(
                        "Image", on_delete="keep", forward="rootImage", reverse="rootVolume"
                    ),
                },
                enums={
                    "type": ["Root", "Data"],
                    "state": sorted(VOLUME_STATE.states),
                    "status": ["Creating", "NotInstantiated", "Ready", "Deleted"],
                    "format": ["qcow2", "raw"],
                },
                docs={
                    "size": "virtual size in bytes (taken on its primary storage)",
                    "actualSize": "bytes used on the storage",
                    "deviceId": "order of the disk in its VM (0: root)",
                },
                owned=True,
                state_field="state",
                summary="a VM disk: root or data",
            )
        )
        registry.add(
            ResourceType(
                "VolumeSnapshot",
                VolumeSnapshotVO,
                self.name,
                "volume-snapshot",
                columns=["uuid", "name", "volumeUuid", "volumeType", "latest", "status"],
                refs={
                    "volumeUuid": RefSpec("Volume", on_delete="cascade"),
                    "primaryStorageUuid": RefSpec("PrimaryStorage", on_delete="keep"),
                },
                enums={"status": ["Ready"], "state": ["Enabled", "Disabled"]},
                docs={"latest": "the snapshot the volume was last taken or reverted to"},
                owned=True,
                summary="a point-in-time copy of a volume",
            )
        )
