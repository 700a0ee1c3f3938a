"""Global configuration APIs (Query<GlobalConfig> comes from the query service)."""

from __future__ import annotations

from typing import Annotated

from zmn.api.message import ApiMessage, Doc, api


@api(resource="GlobalConfig", verb="update", admin=True)
class UpdateGlobalConfig(ApiMessage, kw_only=True):
    """Set a global config; validated against its type, range and choices."""

    category: Annotated[str, Doc("category, e.g. identity")]
    name: Annotated[str, Doc("name within the category, e.g. session.timeout")]
    value: Annotated[
        str | int | float | bool, Doc("new value (text is parsed as the config's type)")
    ]


@api(resource="GlobalConfig", verb="reset", admin=True)
class ResetGlobalConfig(ApiMessage, kw_only=True):
    """Set a global config back to its default value."""

    category: Annotated[str, Doc("category, e.g. identity")]
    name: Annotated[str, Doc("name within the category, e.g. session.timeout")]


@api(resource="GlobalConfig", verb="get-options", mutating=False)
class GetGlobalConfigOptions(ApiMessage, kw_only=True):
    """What a global config accepts: type, default, range, choices."""

    category: Annotated[str, Doc("category, e.g. identity")]
    name: Annotated[str, Doc("name within the category, e.g. session.timeout")]
