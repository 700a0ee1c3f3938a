from __future__ import annotations

from typing import Annotated

from zmn.api.message import ApiMessage, Doc, api


@api(mutating=False, public=True)
class Ping(ApiMessage, kw_only=True):
    """Check that the node answers."""


@api(mutating=False, public=True)
class GetApiCatalogue(ApiMessage, kw_only=True):
    """Every API with its parameters, resource types with fields and joins, enums, error codes."""


@api(mutating=False)
class GetManagementNodeStatus(ApiMessage, kw_only=True):
    """Version, uptime, database and bus backends, services loaded, endpoints."""


@api(mutating=False)
class GetManagementNodeStats(ApiMessage, kw_only=True):
    """API rate and latency percentiles, messages and jobs in flight, queue depths."""


@api(mutating=False)
class GetTaskQueues(ApiMessage, kw_only=True):
    """The task queues: signature, parallelism level, running and pending tasks."""


@api(mutating=False)
class GetFlowChains(ApiMessage, kw_only=True):
    """The flow chains and the steps each runs, after configuration."""


@api(mutating=False)
class Subscribe(ApiMessage, kw_only=True):
    """Receive events whose path matches a pattern (/vm/state/change, /vm/**, /job/*)."""

    paths: Annotated[list[str], Doc("event path patterns; * one segment, ** the rest; default all")] = []


@api(mutating=False)
class Unsubscribe(ApiMessage, kw_only=True):
    """Stop receiving events for these patterns (all when none are given)."""

    paths: Annotated[list[str], Doc("patterns given to Subscribe")] = []
