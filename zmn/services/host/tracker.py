"""Host tracking: ping every host, mark it Disconnected after repeated misses, reconnect it.

Every ``host/ping.interval`` seconds each host is pinged through its host type (at most
``host/connection.parallelism`` at once). ``host/ping.maxFailure`` misses in a row mark a
Connected host Disconnected; a Disconnected host that answers again is reconnected (capacity
resynchronised). At boot every host is reconnected, which also rebuilds simulator records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from zmn.core.service import Call
from zmn.services.host.hosttype import HostRef, HostTypeRegistry
from zmn.services.host.models import HostVO
from zmn.services.host.ops import host_ref, reconnect, set_status

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.host.tracker")


class HostTracker:
    def __init__(self, node: Node, types: HostTypeRegistry) -> None:
        self.node = node
        self.types = types
        self.misses: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def _call(self, api: str) -> Call:
        return Call(self.node, self.node.admin_principal(), api)

    def _config(self, name: str) -> int:
        return int(self.node.global_config.get("host", name))

    def _hosts(self, statuses: tuple[str, ...] | None = None) -> list[HostRef]:
        with self.node.db.tx() as s:
            stmt = select(HostVO)
            if statuses:
                stmt = stmt.where(HostVO.status.in_(statuses))
            rows = s.scalars(stmt.order_by(HostVO.uuid))
            return [host_ref(r) for r in rows if self.node.owns_resource(r.uuid)]

    async def _each(self, refs: list[HostRef], work: str) -> None:
        limit = asyncio.Semaphore(max(1, self._config("connection.parallelism")))

        async def one(ref: HostRef) -> None:
            async with limit, self.node.queues.slot(f"host:{ref.uuid}", 1, work):
                try:
                    if work == "reconnect":
                        await self.reconnect(ref)
                    elif work == "revive":
                        await self.revive(ref)
                    else:
                        await self.ping(ref)
                except Exception:
                    log.exception("%s of host %s failed", work, ref.uuid)

        await asyncio.gather(*(one(r) for r in refs))

    async def reconnect(self, ref: HostRef) -> None:
        try:
            await reconnect(self._call("ReconnectHost"), self.types.get(ref.hypervisorType), ref)
            self.misses.pop(ref.uuid, None)
        except Exception as exc:
            log.warning("host %s (%s) did not reconnect: %s", ref.name, ref.managementIp, exc)

    async def ping(self, ref: HostRef) -> None:
        try:
            await self.types.get(ref.hypervisorType).ping(ref)
        except Exception:
            misses = self.misses[ref.uuid] = self.misses.get(ref.uuid, 0) + 1
            if misses >= self._config("ping.maxFailure"):
                await set_status(self._call("PingHost"), ref.uuid, "disconnected")
            return
        self.misses.pop(ref.uuid, None)

    async def revive(self, ref: HostRef) -> None:
        """A Disconnected host is reconnected once it answers a ping again."""
        try:
            await self.types.get(ref.hypervisorType).ping(ref)
        except Exception:
            return
        await self.reconnect(ref)

    async def reconnect_all(self) -> None:
        await self._each(self._hosts(), "reconnect")

    async def ping_all(self) -> None:
        """One round: ping Connected hosts, try to bring Disconnected ones back."""
        await self._each(self._hosts(("Connected",)), "ping")
        await self._each(self._hosts(("Disconnected",)), "revive")

    async def _loop(self) -> None:
        await self.reconnect_all()
        while True:
            await asyncio.sleep(self._config("ping.interval"))
            try:
                await self.ping_all()
            except Exception:
                log.exception("host ping round failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
