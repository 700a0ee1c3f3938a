"""Tag APIs. Creating a resource can attach tags too (``systemTags``/``userTags``)."""

from __future__ import annotations

from typing import Annotated

from zmn.api.message import ApiMessage, Doc, api


@api(resource="SystemTag", verb="create")
class CreateSystemTag(ApiMessage, kw_only=True):
    """Attach a system tag; it must match a pattern the resource type declares."""

    resourceType: Annotated[str, Doc("type of the tagged resource, e.g. Host")]
    resourceUuid: Annotated[str, Doc("UUID or name of the tagged resource")]
    tag: Annotated[str, Doc("the tag, e.g. hostname::web1")]


@api(resource="UserTag", verb="create")
class CreateUserTag(ApiMessage, kw_only=True):
    """Attach a user tag (free text) to a resource."""

    resourceType: Annotated[str, Doc("type of the tagged resource, e.g. VmInstance")]
    resourceUuid: Annotated[str, Doc("UUID or name of the tagged resource")]
    tag: Annotated[str, Doc("the tag, e.g. prod")]


@api(resource="SystemTag", verb="update")
class UpdateSystemTag(ApiMessage, kw_only=True):
    """Replace the text of a system tag (checked against the patterns again)."""

    uuid: Annotated[str, Doc("UUID of the system tag")]
    tag: Annotated[str, Doc("the new tag")]


@api()
class DeleteTag(ApiMessage, kw_only=True):
    """Delete a system or user tag."""

    uuid: Annotated[str, Doc("UUID of the tag")]
