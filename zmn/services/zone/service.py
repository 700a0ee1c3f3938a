"""Zones: the top of the resource tree."""

from __future__ import annotations

from typing import Any

from zmn.core import crud
from zmn.core.resource import ResourceRegistry, ResourceType
from zmn.core.service import Call, Service, handler
from zmn.core.state import StateMachine
from zmn.services.zone.api import ChangeZoneState, CreateZone, DeleteZone, UpdateZone
from zmn.services.zone.models import ZoneVO

ENABLE_MACHINE = StateMachine(
    "Zone",
    {
        ("Enabled", "disable"): "Disabled",
        ("Enabled", "enable"): "Enabled",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
    },
)


class ZoneService(Service):
    name = "zone"
    summary = "zones"
    state_machines = [ENABLE_MACHINE]
    error_codes = {
        "ZONE.NOT_FOUND": "no zone with that UUID or name",
        "ZONE.DUPLICATE_NAME": "a zone with that name exists",
        "ZONE.HAS_DEPENDENTS": "the zone still has clusters, storage or networks",
    }

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "Zone",
                ZoneVO,
                self.name,
                "zone",
                columns=["uuid", "name", "state", "description"],
                enums={"state": ["Enabled", "Disabled"]},
                summary="a failure domain holding clusters, storage and networks",
            )
        )

    @handler(CreateZone)
    async def create_zone(self, msg: CreateZone, call: Call) -> dict[str, Any]:
        rt = self.node.resources.get("Zone")
        return await crud.create(
            call,
            "Zone",
            ZoneVO(name=msg.name, state="Enabled"),
            msg,
            check=lambda s: crud.unique_name(s, rt, msg.name),
        )

    @handler(UpdateZone)
    async def update_zone(self, msg: UpdateZone, call: Call) -> dict[str, Any]:
        return await crud.update_fields(
            call, "Zone", msg.uuid, {"name": msg.name, "description": msg.description}
        )

    @handler(ChangeZoneState)
    async def change_zone_state(self, msg: ChangeZoneState, call: Call) -> dict[str, Any]:
        return await crud.change_state(call, "Zone", msg.uuid, msg.stateEvent, ENABLE_MACHINE)

    @handler(DeleteZone)
    async def delete_zone(self, msg: DeleteZone, call: Call) -> dict[str, Any]:
        return await crud.delete(call, "Zone", msg.uuid, cascade=msg.cascade)
