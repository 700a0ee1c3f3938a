"""Test hooks that ship with the node but stay off unless ``zmn.conf`` turns them on.

- ``testing.crashpoints=true``: ``InjectCrash`` arms a crash point (:mod:`zmn.core.crashpoint`)
  that kills the process before or after a named flow step, for crash-recovery tests run
  against real processes.
- ``api.log=PATH``: every mutating API call is appended to a JSON-lines log that
  ``zmn replay`` re-runs against a node (:mod:`zmn.services.testing.apilog`).

Disabling the plugin (``plugins.disabled=testing``) removes both and nothing else.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidArgument, PermissionDenied
from zmn.core.audit import ApiCallObserver, ApiCallRecord
from zmn.core.crashpoint import CrashPlan, CrashPoints, enabled
from zmn.core.service import Call, Service, handler
from zmn.services.testing.api import ClearCrashPoints, InjectCrash
from zmn.services.testing.apilog import ApiLog, log_path

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.testing")


class _CrashAfterApi:
    """Observer that fires ``api`` crash plans once the call has finished."""

    def __init__(self, points: CrashPoints) -> None:
        self.points = points

    def api_called(self, record: ApiCallRecord) -> None:
        if record.error is None:
            self.points.on_api(record.api)


class TestingService(Service):
    name = "testing"
    summary = "test hooks: crash points and the API log (off unless zmn.conf enables them)"
    error_codes = {
        "TEST.CRASHPOINTS_DISABLED": "crash injection needs testing.crashpoints=true in zmn.conf",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.crash: CrashPoints | None = None
        self.api_log: ApiLog | None = None
        if enabled(node):
            self.crash = CrashPoints(node)
            node.extensions.add(ApiCallObserver, _CrashAfterApi(self.crash))  # type: ignore[type-abstract]
        path = log_path(node)
        if path is not None:
            self.api_log = ApiLog(path)
            node.extensions.add(ApiCallObserver, self.api_log)  # type: ignore[type-abstract]
            log.info("logging mutating API calls to %s", path)

    async def stop(self) -> None:
        if self.api_log is not None:
            self.api_log.close()

    def _points(self) -> CrashPoints:
        if self.crash is None:
            raise PermissionDenied(
                "crash injection is for testing: set testing.crashpoints=true in zmn.conf",
                code="TEST.CRASHPOINTS_DISABLED",
            )
        return self.crash

    @handler(InjectCrash)
    async def inject_crash(self, msg: InjectCrash, call: Call) -> dict[str, Any]:
        points = self._points()
        if msg.api:
            if msg.api not in self.node.apis.apis:
                raise InvalidArgument(f"no API named {msg.api!r}", field="api")
            return {"crashPoints": points.arm(CrashPlan(api=msg.api))}
        flows = self.node.flows
        if msg.flow not in flows.flows:
            raise InvalidArgument(
                f"no flow named {msg.flow!r} (flows: {', '.join(sorted(flows.flows))})",
                field="flow",
            )
        if msg.chain != "*" and msg.chain not in flows.chains:
            raise InvalidArgument(
                f"no flow chain named {msg.chain!r} (chains: {', '.join(sorted(flows.chains))})",
                field="chain",
            )
        return {"crashPoints": points.arm(CrashPlan(msg.chain, msg.flow, msg.when))}

    @handler(ClearCrashPoints)
    async def clear_crash_points(self, msg: ClearCrashPoints, call: Call) -> dict[str, Any]:
        self._points().clear()
        return {"crashPoints": []}
