"""``Query<Type>``: one API per resource type, made when the node loads its services."""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

import msgspec

from zmn.api.message import ApiMessage, Doc, api


class QueryMessage(ApiMessage, kw_only=True):
    """Base of every Query<Type> API."""

    conditions: Annotated[
        list[str | dict[str, Any]],
        Doc("conditions FIELD OP VALUE, e.g. name=z1, cpuNum>=2, vmNics.l3Network.name=pub"),
    ] = []
    limit: Annotated[int, Doc("at most this many rows (max 100000)")] = 1000
    start: Annotated[
        int, Doc("skip this many rows (SQL OFFSET: reads them all; page with after instead)")
    ] = 0
    after: Annotated[
        str | None,
        Doc("continue behind this cursor: the next of the previous page (keyset paging)"),
    ] = None
    count: Annotated[bool, Doc("reply only {total: N}")] = False
    replyWithCount: Annotated[bool, Doc("add the total count to the rows")] = False
    sortBy: Annotated[str | None, Doc("field to sort by")] = None
    sortDirection: Annotated[Literal["asc", "desc"], Doc("sort order")] = "asc"
    fields: Annotated[list[str] | None, Doc("only these fields of each row")] = None
    groupBy: Annotated[str | None, Doc("count rows per value of this field")] = None


def make_query_api(resource: str, summary: str) -> type[QueryMessage]:
    cls = msgspec.defstruct(
        f"Query{resource}", [], bases=(QueryMessage,), kw_only=True, module=__name__
    )
    cls.__doc__ = f"Query {resource} resources{': ' + summary if summary else ''}."
    query_cls = typing.cast(type[QueryMessage], cls)
    return api(resource=resource, verb="query", mutating=False)(query_cls)
