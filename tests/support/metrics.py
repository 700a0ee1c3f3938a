"""A node that samples simulated usage every second and serves Prometheus, for metrics tests."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, GiB, build_cloud
from zmn.core.node import Node


@asynccontextmanager
async def metrics_node(home: Path) -> AsyncIterator[tuple[Node, Api, Cloud]]:
    """A node with ``metrics.listen`` on a free port, ``simulator.interval`` at 1 s, and a
    cloud of one 8-CPU, 16 GiB simulator host (``h1``)."""
    async with running_node(home, conf={"metrics.listen": "127.0.0.1:0"}) as (node, _server):
        api = Api(node)
        await api("UpdateGlobalConfig", category="metrics", name="simulator.interval", value="1")
        yield node, api, await build_cloud(api, hosts=((8, 16 * GiB),))


async def scrape(node: Node) -> str:
    """The node's Prometheus page, fetched the way Prometheus does (plain HTTP)."""
    port = node.services["metrics"].port  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())

    return await asyncio.to_thread(fetch)
