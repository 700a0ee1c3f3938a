"""A node inside the benchmark process, for the profiles and the in-process bus benchmark.

The measured benchmarks use the real node process (:mod:`bench.node`); profiling needs the
node's frames in this interpreter, so the profile runs the same services in process, with
the API server on a socket in the temporary home, and calls them through the socket too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from zmn.core.config import BootConfig
from zmn.core.db import Base
from zmn.core.node import Node
from zmn.server import ApiServer


@asynccontextmanager
async def inproc_node(home: Path, conf: dict[str, str] | None = None) -> AsyncIterator[Node]:
    """Every entry-point service, a SQLite file in ``home`` and the API socket."""
    home.mkdir(parents=True, exist_ok=True)
    if conf:
        (home / "zmn.conf").write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
    node = Node(BootConfig.load(home, env={}))
    node.load_services()
    Base.metadata.create_all(node.db.engine)
    server = ApiServer(node)
    await server.start()
    await node.start()
    try:
        yield node
    finally:
        await server.stop()
        await node.stop(grace=5)


def endpoint_of(node: Node) -> str:
    return f"unix:{node.config.unix_path}"


def admin_call(node: Node) -> Any:
    """``await call(api, **args)`` straight into ``Node.execute`` as the socket owner."""

    async def call(api: str, **args: Any) -> Any:
        result, _ = await node.execute(api, args, peer_admin=True)
        return result

    return call
