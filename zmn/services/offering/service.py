"""Offerings: instance offerings (VM sizes) and disk offerings (volume sizes)."""

from __future__ import annotations

from typing import Any

from zmn.core import crud, links
from zmn.core.resource import ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.services.offering.api import (
    ChangeDiskOfferingState,
    ChangeInstanceOfferingState,
    CreateDiskOffering,
    CreateInstanceOffering,
    DeleteDiskOffering,
    DeleteInstanceOffering,
    UpdateDiskOffering,
    UpdateInstanceOffering,
)
from zmn.services.offering.models import DiskOfferingVO, InstanceOfferingVO


def _enable_table(resource: str) -> StateMachine:
    return StateMachine(
        resource,
        {
            ("Enabled", "enable"): "Enabled",
            ("Enabled", "disable"): "Disabled",
            ("Disabled", "enable"): "Enabled",
            ("Disabled", "disable"): "Disabled",
        },
        allowed={"use": {"Enabled"}},
    )


INSTANCE_OFFERING_STATE = _enable_table("InstanceOffering")
DISK_OFFERING_STATE = _enable_table("DiskOffering")


class OfferingService(Service):
    name = "offering"
    summary = "instance and disk offerings"
    state_machines = [INSTANCE_OFFERING_STATE, DISK_OFFERING_STATE]
    error_codes = {
        "INSTANCE_OFFERING.NOT_FOUND": "no instance offering with that UUID or name",
        "INSTANCE_OFFERING.DUPLICATE_NAME": "an instance offering with that name exists",
        "INSTANCE_OFFERING.INVALID_SIZE": "cpuNum or memorySize is too small",
        "INSTANCE_OFFERING.INVALID_STATE": "the state event is not allowed in the offering's state",
        "DISK_OFFERING.NOT_FOUND": "no disk offering with that UUID or name",
        "DISK_OFFERING.DUPLICATE_NAME": "a disk offering with that name exists",
        "DISK_OFFERING.INVALID_SIZE": "diskSize is too small",
        "DISK_OFFERING.INVALID_STATE": "the state event is not allowed in the offering's state",
    }

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "InstanceOffering",
                InstanceOfferingVO,
                self.name,
                "instance-offering",
                columns=["uuid", "name", "cpuNum", "memorySize", "state"],
                enums={"state": ["Enabled", "Disabled"], "type": ["UserVm"]},
                docs={"memorySize": "memory in bytes", "cpuNum": "number of vCPUs"},
                state_field="state",
                summary="the vCPUs and memory of a VM",
            )
        )
        registry.add(
            ResourceType(
                "DiskOffering",
                DiskOfferingVO,
                self.name,
                "disk-offering",
                columns=["uuid", "name", "diskSize", "state"],
                enums={"state": ["Enabled", "Disabled"]},
                docs={"diskSize": "volume size in bytes"},
                state_field="state",
                summary="the size of a data volume",
            )
        )

    # ----------------------------------------------------------------- instance offerings

    @handler(CreateInstanceOffering)
    async def create_instance_offering(
        self, msg: CreateInstanceOffering, call: Call
    ) -> dict[str, Any]:
        # sizes: the catalogue ranges on CreateInstanceOffering (zmn.api.limits)
        rt = self.node.resources.get("InstanceOffering")
        row = InstanceOfferingVO(
            name=msg.name,
            cpuNum=msg.cpuNum,
            cpuSpeed=msg.cpuSpeed,
            memorySize=msg.memorySize,
            allocatorStrategy=msg.allocatorStrategy,
            sortKey=msg.sortKey,
            state="Enabled",
            type=msg.type,
        )
        return await crud.create(
            call, "InstanceOffering", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(UpdateInstanceOffering)
    async def update_instance_offering(
        self, msg: UpdateInstanceOffering, call: Call
    ) -> dict[str, Any]:
        links.check_rename(call, "InstanceOffering", msg.uuid, msg.name)
        return await crud.update_fields(
            call,
            "InstanceOffering",
            msg.uuid,
            {"name": msg.name, "description": msg.description, "sortKey": msg.sortKey},
        )

    @handler(ChangeInstanceOfferingState)
    async def change_instance_offering_state(
        self, msg: ChangeInstanceOfferingState, call: Call
    ) -> dict[str, Any]:
        return await crud.change_state(
            call, "InstanceOffering", msg.uuid, msg.stateEvent, INSTANCE_OFFERING_STATE
        )

    @handler(DeleteInstanceOffering)
    async def delete_instance_offering(
        self, msg: DeleteInstanceOffering, call: Call
    ) -> dict[str, Any]:
        return await crud.delete(call, "InstanceOffering", msg.uuid, cascade=msg.cascade)

    # ----------------------------------------------------------------- disk offerings

    @handler(CreateDiskOffering)
    async def create_disk_offering(self, msg: CreateDiskOffering, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("DiskOffering")
        row = DiskOfferingVO(
            name=msg.name,
            diskSize=msg.diskSize,
            allocatorStrategy=msg.allocatorStrategy,
            sortKey=msg.sortKey,
            state="Enabled",
        )
        return await crud.create(
            call, "DiskOffering", row, msg, check=lambda s: crud.unique_name(s, rt, msg.name)
        )

    @handler(UpdateDiskOffering)
    async def update_disk_offering(self, msg: UpdateDiskOffering, call: Call) -> dict[str, Any]:
        links.check_rename(call, "DiskOffering", msg.uuid, msg.name)
        return await crud.update_fields(
            call,
            "DiskOffering",
            msg.uuid,
            {"name": msg.name, "description": msg.description, "sortKey": msg.sortKey},
        )

    @handler(ChangeDiskOfferingState)
    async def change_disk_offering_state(
        self, msg: ChangeDiskOfferingState, call: Call
    ) -> dict[str, Any]:
        return await crud.change_state(
            call, "DiskOffering", msg.uuid, msg.stateEvent, DISK_OFFERING_STATE
        )

    @handler(DeleteDiskOffering)
    async def delete_disk_offering(self, msg: DeleteDiskOffering, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "DiskOffering", msg.uuid, cascade=msg.cascade)
