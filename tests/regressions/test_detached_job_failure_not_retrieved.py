"""Regression: a long action the dashboard started detached (``wait: false``) that failed
left "Task exception was never retrieved" in the node's log, because nobody awaited the
job's task. The job manager now takes the outcome from the task itself (it is recorded on
the job row already).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import running_node
from zmn.api.errors import OperationFailed
from zmn.api.message import ApiMessage, api
from zmn.core.service import Call, Service, handler
from zmn.services.job.service import JobService


@api(long=True)
class FailSoon(ApiMessage, kw_only=True):
    """Fails at once (test only)."""


class FailService(Service):
    name = "failsoon"

    @handler(FailSoon)
    async def fail(self, msg: FailSoon, call: Call) -> dict[str, Any]:
        raise OperationFailed("asked to fail", code="TEST.FAILED")


async def test_a_failed_detached_job_leaves_nothing_unretrieved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with running_node(tmp_path / "home", services=[JobService, FailService]) as (node, _):
        _, job = await node.execute("FailSoon", {}, peer_admin=True, wait=False)
        for _ in range(100):
            if not node.jobs.tasks:
                break
            await asyncio.sleep(0.01)
        assert not node.jobs.tasks
        assert node.jobs.get(str(job))["state"] == "Failed"
        await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
