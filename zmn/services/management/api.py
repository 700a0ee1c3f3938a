from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, Doc, api


@api(mutating=False, public=True)
class Ping(ApiMessage, kw_only=True):
    """Check that the node answers."""


@api(mutating=False, public=True)
class GetApiCatalogue(ApiMessage, kw_only=True):
    """Every API with its parameters, resource types with fields and joins, enums, error codes."""


@api(mutating=False)
class GetManagementNodeStatus(ApiMessage, kw_only=True):
    """Version, uptime, database and bus backends, services loaded, endpoints.

    Normal accounts get the version, uptime and whether the node is stopping (``adminView``
    false); database URLs, paths, pids, endpoints and the ring are for admins.
    """


@api(mutating=False)
class GetManagementNodeStats(ApiMessage, kw_only=True):
    """API rate and latency percentiles, messages and jobs in flight, queue depths.

    Normal accounts get the node-wide rate and latency percentiles (``adminView`` false);
    per-API counts, the bus, jobs and queues are for admins.
    """


@api(mutating=False)
class GetTaskQueues(ApiMessage, kw_only=True):
    """The task queues: signature, parallelism level, running and pending tasks."""


@api(mutating=False)
class GetFlowChains(ApiMessage, kw_only=True):
    """The flow chains and the steps each runs, after configuration."""


@api(mutating=False)
class Subscribe(ApiMessage, kw_only=True):
    """Receive events whose path matches a pattern (/vm/state/change, /vm/**, /job/*)."""

    paths: Annotated[
        list[str], Doc("event path patterns; * one segment, ** the rest; default all")
    ] = []


@api(mutating=False)
class Unsubscribe(ApiMessage, kw_only=True):
    """Stop receiving events for these patterns (all when none are given)."""

    paths: Annotated[list[str], Doc("patterns given to Subscribe")] = []


@api(admin=True, mutating=False)
class CheckConsistency(ApiMessage, kw_only=True):
    """Check every invariant the services declare (IPs, capacity, states); empty when all hold."""


@api(admin=True)
class InjectFlowFault(ApiMessage, kw_only=True):
    """Make a flow fail (testing; needs testing.faults=true in zmn.conf)."""

    flow: Annotated[str, Doc("flow name, as GetFlowChains lists it")]
    chain: Annotated[str, Doc("flow chain name, or * for any chain")] = "*"
    count: Annotated[int, Doc("how many runs of the flow fail")] = 1
    when: Annotated[
        Literal["before", "after"], Doc("fail before the step runs or after it ran")
    ] = "before"


@api(admin=True)
class ClearFlowFaults(ApiMessage, kw_only=True):
    """Remove every planned flow fault (testing)."""
