from __future__ import annotations

from typing import Annotated

from zmn.api.message import ApiMessage, CreateMessage, DeleteMessage, Doc, Ref, api

# ----------------------------------------------------------------------------- VIP


@api(resource="Vip", verb="create")
class CreateVip(CreateMessage, kw_only=True):
    """Take an address from an L3 network (usually a Public one) as a virtual IP."""

    name: Annotated[str, Doc("VIP name")]
    l3NetworkUuid: Annotated[str, Doc("L3 network to take the address from"), Ref("L3Network")]
    requiredIp: Annotated[
        str | None, Doc("the address to take; any free one of the L3 network if not given")
    ] = None


@api(resource="Vip", verb="update")
class UpdateVip(ApiMessage, kw_only=True):
    """Rename a VIP or change its description."""

    uuid: Annotated[str, Doc("VIP UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="Vip", verb="delete")
class DeleteVip(DeleteMessage, kw_only=True):
    """Delete a VIP and give its address back; refused while an EIP uses it unless cascade=true."""


# ----------------------------------------------------------------------------- EIP


@api(resource="Eip", verb="create")
class CreateEip(CreateMessage, kw_only=True):
    """Create an elastic IP on a VIP, attached to a VM NIC at once when vmNicUuid is given."""

    name: Annotated[str, Doc("EIP name")]
    vipUuid: Annotated[str, Doc("VIP UUID or name; one EIP per VIP"), Ref("Vip")]
    vmNicUuid: Annotated[
        str | None, Doc("VM NIC to attach to (its L3 network must not be the VIP's)"), Ref("VmNic")
    ] = None


@api(resource="Eip", verb="update")
class UpdateEip(ApiMessage, kw_only=True):
    """Rename an EIP or change its description."""

    uuid: Annotated[str, Doc("EIP UUID or name")]
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None


@api(resource="Eip", verb="attach")
class AttachEip(ApiMessage, kw_only=True):
    """Attach a detached EIP to a VM NIC."""

    eipUuid: Annotated[str, Doc("EIP UUID or name"), Ref("Eip")]
    vmNicUuid: Annotated[str, Doc("VM NIC UUID"), Ref("VmNic")]


@api(resource="Eip", verb="detach")
class DetachEip(ApiMessage, kw_only=True):
    """Detach an EIP from its VM NIC; the EIP and its VIP stay."""

    eipUuid: Annotated[str, Doc("EIP UUID or name"), Ref("Eip")]


@api(resource="Eip", verb="delete")
class DeleteEip(DeleteMessage, kw_only=True):
    """Delete an EIP (detaching it first); its VIP stays and becomes free."""
