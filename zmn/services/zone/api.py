from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, api


@api(resource="Zone", verb="create", admin=True)
class CreateZone(CreateMessage, kw_only=True):
    """Create a zone: the top of the resource tree, a failure domain such as a data centre."""

    name: Annotated[str, Doc("zone name")]


@api(resource="Zone", verb="update", admin=True)
class UpdateZone(ApiMessage, kw_only=True):
    """Rename a zone or change its description."""

    uuid: Annotated[str, Doc("zone UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="Zone", verb="delete", admin=True)
class DeleteZone(DeleteMessage, kw_only=True):
    """Delete a zone; refused while it has clusters, storage or networks unless cascade=true."""


@api(resource="Zone", verb="change-state", admin=True)
class ChangeZoneState(ApiMessage, kw_only=True):
    """Enable or disable a zone (a disabled zone takes no new VMs)."""

    uuid: Annotated[str, Doc("zone UUID or name")]
    stateEvent: Annotated[Literal["enable", "disable"], Doc("enable or disable")]
