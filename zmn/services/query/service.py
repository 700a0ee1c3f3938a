"""The query service: ``Query<Type>`` for every resource type in the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zmn.api.message import ApiMessage
from zmn.core.query import QuerySpec, parse_conditions
from zmn.core.service import Call, Service
from zmn.services.query.api import QueryMessage, make_query_api

_API_CACHE: dict[str, type[QueryMessage]] = {}


class QueryService(Service):
    name = "query"
    summary = "Query<Type> over every resource type, with joins"
    error_codes = {
        "QUERY.UNKNOWN_FIELD": "the field is not a field of that resource type",
        "QUERY.UNKNOWN_JOIN": "the path names a join the resource type does not have",
        "QUERY.BAD_CONDITION": "a condition is not FIELD OP VALUE",
        "QUERY.BAD_VALUE": "the value does not fit the field's type",
        "QUERY.BAD_CURSOR": "after is not the next cursor of the same query (sortBy, direction)",
    }

    def dynamic_handlers(self) -> dict[str, tuple[type[ApiMessage], Callable[..., Any]]]:
        out: dict[str, tuple[type[ApiMessage], Callable[..., Any]]] = {}
        for rt in self.node.resources.types.values():
            cls = _API_CACHE.get(rt.name)
            if cls is None:
                cls = _API_CACHE[rt.name] = make_query_api(rt.name, rt.summary)
            out[cls.__api__.name] = (cls, self._handler_for(rt.name))
        return out

    def _handler_for(self, resource: str) -> Callable[..., Any]:
        async def query(msg: QueryMessage, call: Call) -> dict[str, Any]:
            spec = QuerySpec(
                resource=resource,
                conditions=parse_conditions(msg.conditions),
                limit=msg.limit,
                start=msg.start,
                after=msg.after,
                count=msg.count,
                replyWithCount=msg.replyWithCount,
                sortBy=msg.sortBy,
                sortDirection=msg.sortDirection,
                fields=msg.fields,
                groupBy=msg.groupBy,
            )
            with self.node.db.session() as session:
                return self.node.compiler.run(session, spec, call.principal)

        return query
