"""Crash points: a test hook that kills the node at a named place, as a power cut would.

Enabled only when ``zmn.conf`` has ``testing.crashpoints=true``. A plan names a flow chain,
a flow and ``before`` (the intent is persisted, the step has not run) or ``after`` (the step
ran and is recorded as done). The hook listens to the flow registry, so any chain, including
one changed by configuration or a plugin, can be cut at any step. An ``api`` plan kills the
node after an API call finished but before its reply leaves (an unacknowledged success).

The process ends with ``os._exit(137)``: no ``finally`` blocks, no graceful stop, no flush of
anything but the log, which is exactly what crash recovery has to survive.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from zmn.core.fastsql import settle

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.crashpoint")

EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL
WHEN_BY_EVENT = {"run": "before", "done": "after"}


@dataclass
class CrashPlan:
    """Kill the node at ``chain``/``flow`` ``when`` (``*`` matches any chain); or after ``api``."""

    chain: str = "*"
    flow: str = ""
    when: str = "before"  # before | after
    api: str = ""


def enabled(node: Node) -> bool:
    return node.config.get("testing.crashpoints") == "true"


def die(reason: str) -> None:
    """Log why, flush the log handlers, and end the process at once."""
    log.critical("crash point reached: %s; exiting with %d", reason, EXIT_STATUS)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: S110 - dying anyway
            pass
    os._exit(EXIT_STATUS)


class CrashPoints:
    """The armed plans of one node; hooked into its flow registry when enabled."""

    def __init__(self, node: Node, *, exit_fn: Any = die) -> None:
        self.node = node
        self.plans: list[CrashPlan] = []
        self.exit_fn = exit_fn  # tests of the hook itself replace it
        node.flows.listeners.append(self.on_flow)

    def arm(self, plan: CrashPlan) -> list[dict[str, str]]:
        self.plans.append(plan)
        return self.describe()

    def clear(self) -> None:
        self.plans.clear()

    def describe(self) -> list[dict[str, str]]:
        return [asdict(p) for p in self.plans]

    def on_flow(self, chain: str, flow: str, event: str) -> None:
        when = WHEN_BY_EVENT.get(event)
        if when is None or not self.plans:
            return
        for plan in self.plans:
            if plan.flow == flow and plan.when == when and plan.chain in (chain, "*"):
                self.plans.remove(plan)
                # the record is durable at this point of the chain: its write may be waiting
                # for the loop turn's commit (with the step's own writes), so commit it first
                settle()
                self.exit_fn(f"{when} {chain}/{flow}")
                return

    def on_api(self, api: str) -> None:
        for plan in self.plans:
            if plan.api and plan.api == api:
                self.plans.remove(plan)
                self.exit_fn(f"after API {api}")
                return
