"""Test-only APIs: crash the node at a flow step (needs testing.crashpoints=true)."""

from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.message import ApiMessage, Doc, api


@api(admin=True)
class InjectCrash(ApiMessage, kw_only=True):
    """Kill the node (exit 137) before or after a flow step, or after an API call (testing;
    needs testing.crashpoints=true in zmn.conf)."""

    flow: Annotated[str, Doc("flow name, as GetFlowChains lists it (or empty with api)")] = ""
    chain: Annotated[str, Doc("flow chain name, or * for any chain")] = "*"
    when: Annotated[
        Literal["before", "after"], Doc("die before the step runs or after it is recorded done")
    ] = "before"
    api: Annotated[
        str, Doc("instead of a flow: die after this mutating API finished, before it replies")
    ] = ""


@api(admin=True)
class ClearCrashPoints(ApiMessage, kw_only=True):
    """Disarm every crash point (testing)."""
