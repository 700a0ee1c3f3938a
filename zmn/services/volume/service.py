"""Volumes (root and data) and volume snapshots.

Root volumes are made and removed by the VM life cycle through internal messages; data
volumes have their own APIs. Capacity on primary storage is reserved and given back through
the primary-storage service's internal messages.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from zmn.core.consistency import ConsistencyCheck, Violation
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Service
from zmn.services.volume.data import VOLUME_STATE, DataVolumeHandlers
from zmn.services.volume.flows import CHAINS, recover
from zmn.services.volume.models import VolumeSnapshotVO, VolumeVO
from zmn.services.volume.resize import ResizeHandlers
from zmn.services.volume.snapshots import SnapshotHandlers
from zmn.services.volume.store import StoreHandlers

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.bus import Event, Subscription
    from zmn.core.node import Node

log = logging.getLogger("zmn.volume")


class VolumeConsistency:
    """Volumes agree with their VMs and storage.

    * ``volume-owned-by-vm``: a volume attached to a VM names a VM that exists;
    * ``volume-device``: an attached data volume has a device number of its own in its VM
      (1 and up, no two alike), a detached one has none;
    * ``volume-storage``: a volume has storage (``primaryStorageUuid``, ``installPath``)
      exactly when it is not NotInstantiated.
    """

    def __init__(self, node: Node) -> None:
        self.node = node

    def check_consistency(self, session: Session) -> list[Violation]:
        out: list[Violation] = []
        rt = self.node.resources.types.get("VmInstance")
        if rt is not None:
            rows = session.execute(
                select(VolumeVO.uuid, VolumeVO.vmInstanceUuid).where(
                    VolumeVO.vmInstanceUuid.is_not(None),
                    VolumeVO.vmInstanceUuid.not_in(select(rt.model.uuid)),
                )
            )
            out += [
                Violation(
                    check="volume-owned-by-vm",
                    resourceType="Volume",
                    uuid=uuid,
                    message=f"volume {uuid} is attached to VM {vm}, which does not exist",
                )
                for uuid, vm in rows
            ]
        data = VolumeVO.type == "Data"
        for uuid, vm, device in session.execute(
            select(VolumeVO.uuid, VolumeVO.vmInstanceUuid, VolumeVO.deviceId).where(
                data,
                (VolumeVO.vmInstanceUuid.is_(None) & VolumeVO.deviceId.is_not(None))
                | (
                    VolumeVO.vmInstanceUuid.is_not(None)
                    & (VolumeVO.deviceId.is_(None) | (VolumeVO.deviceId < 1))
                ),
            )
        ):
            out.append(
                Violation(
                    check="volume-device",
                    resourceType="Volume",
                    uuid=uuid,
                    message=f"data volume {uuid} has VM {vm} and device number {device}",
                    actual=[vm, device],
                )
            )
        for vm, device, count in session.execute(
            select(VolumeVO.vmInstanceUuid, VolumeVO.deviceId, func.count())
            .where(VolumeVO.vmInstanceUuid.is_not(None), VolumeVO.deviceId.is_not(None))
            .group_by(VolumeVO.vmInstanceUuid, VolumeVO.deviceId)
            .having(func.count() > 1)
        ):
            out.append(
                Violation(
                    check="volume-device",
                    resourceType="VmInstance",
                    uuid=str(vm),
                    message=f"{count} volumes of VM {vm} have device number {device}",
                    actual=count,
                    expected=1,
                )
            )
        unplaced = VolumeVO.status == "NotInstantiated"
        for uuid, status, ps in session.execute(
            select(VolumeVO.uuid, VolumeVO.status, VolumeVO.primaryStorageUuid).where(
                (unplaced & VolumeVO.primaryStorageUuid.is_not(None))
                | (~unplaced & VolumeVO.primaryStorageUuid.is_(None))
            )
        ):
            out.append(
                Violation(
                    check="volume-storage",
                    resourceType="Volume",
                    uuid=uuid,
                    message=f"volume {uuid} is {status} with primary storage {ps}",
                    actual=[status, ps],
                )
            )
        return out


class VolumeService(DataVolumeHandlers, SnapshotHandlers, ResizeHandlers, StoreHandlers, Service):
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
        "VOLUME.SHRINK": "a volume only grows: the new size is smaller than the volume",
        "VOLUME.WRONG_TYPE": "ResizeRootVolume is for root volumes, ResizeDataVolume for data",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        node.extensions.add(ConsistencyCheck, VolumeConsistency(node))  # type: ignore[type-abstract]
        for chain, flows in CHAINS.items():
            node.flows.add_chain(chain, flows)
        self._evictions: Subscription | None = None

    async def start(self) -> None:
        try:
            done = await recover(self.node)
            if done:
                log.warning("settled %d interrupted volume attach/detach(es)", len(done))
        except Exception:  # a failed recovery must not keep the node down
            log.exception("recovering interrupted volume operations failed")
        self._evictions = self.node.bus.subscribe("/managementNode/evicted", self._on_evicted)

    async def stop(self) -> None:
        if self._evictions is not None:
            self._evictions.cancel()
            self._evictions = None

    async def _on_evicted(self, event: Event) -> None:
        """The node that evicted a dead node settles the attaches and detaches it left."""
        dead = str(event.data.get("nodeUuid") or "")
        if event.data.get("evictedBy") != self.node.uuid or not dead:
            return
        try:
            await recover(self.node, of_node=dead)
        except Exception:
            log.exception("settling the volume operations of evicted node %s failed", dead)

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Volume",
                VolumeVO,
                self.name,
                "volume",
                aliases={"image": "rootImage", "snapshot": "volumeSnapshot"},  # ZStack's
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
