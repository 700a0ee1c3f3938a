"""A real management node inside the test process: real SQLite, real bus, real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from zmn.client import AsyncClient
from zmn.core.config import BootConfig
from zmn.core.db import Base
from zmn.core.node import Node
from zmn.core.service import Service
from zmn.server import ApiServer


@asynccontextmanager
async def running_node(
    home: Path,
    *,
    services: list[type[Service]] | None = None,
    conf: dict[str, str] | None = None,
) -> AsyncIterator[tuple[Node, ApiServer]]:
    """Start a node (all entry-point services unless given) with its API socket in ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    if conf:
        (home / "zmn.conf").write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
    node = Node(BootConfig.load(home, env={}))
    node.load_services(services)
    Base.metadata.create_all(node.db.engine)
    server = ApiServer(node)
    await server.start()
    await node.start()
    try:
        yield node, server
    finally:
        await server.stop()
        await node.stop(grace=5)


class Api:
    """Calls as the unix-socket owner (admin) straight into ``Node.execute``."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def __call__(self, api: str, **args: Any) -> Any:
        result, _ = await self.node.execute(api, args, peer_admin=True)
        return result


@asynccontextmanager
async def client_for(server: ApiServer, session: str | None = None) -> AsyncIterator[AsyncClient]:
    endpoint = f"unix:{server.node.config.unix_path}"
    async with AsyncClient(endpoint, session) as client:
        yield client
