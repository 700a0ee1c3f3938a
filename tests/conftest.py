"""Shared fixtures.

Tests that need root, libvirt, sshd, RabbitMQ, MariaDB or PostgreSQL carry a marker; outside
CI they skip with the reason printed when the need is not met; under ``CI=true`` they run and
fail instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.inproc import Api, running_node

IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip outside CI when ``condition`` is false; under CI=true, fail."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture
async def node_api(tmp_path: Path) -> AsyncIterator[Api]:
    """An in-process node with every built-in service; call APIs as admin."""
    async with running_node(tmp_path / "home") as (node, _server):
        yield Api(node)
