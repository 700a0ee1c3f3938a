"""The expunge reaper: destroyed VMs older than ``vm/expungePeriod`` are expunged.

Under deletion policy Delay a destroyed VM stays (recoverable) for the period; the reaper,
every ``vm/expungeInterval`` seconds, expunges those whose period is over through the normal
``ExpungeVmInstance`` handler (same queue, same chain). Under Never nothing is reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from zmn.core.db import utcnow
from zmn.core.service import Call
from zmn.services.vm.models import VmInstanceVO

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.vm.reaper")


class ExpungeReaper:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._task: asyncio.Task[None] | None = None

    def _config(self, name: str) -> int:
        return int(self.node.global_config.get("vm", name))

    def due(self) -> list[str]:
        """Destroyed VMs whose expunge period is over (none under policy Never)."""
        if self.node.global_config.get("vm", "deletionPolicy") == "Never":
            return []
        limit = utcnow() - dt.timedelta(seconds=self._config("expungePeriod"))
        with self.node.db.tx() as s:
            return list(
                s.scalars(
                    select(VmInstanceVO.uuid).where(
                        VmInstanceVO.state == "Destroyed", VmInstanceVO.lastOpDate <= limit
                    )
                )
            )

    async def run_once(self) -> int:
        """Expunge what is due; returns how many VMs went."""
        from zmn.services.vm.api import ExpungeVmInstance

        call = Call(self.node, self.node.admin_principal(), "ExpungeVmInstance")
        done = 0
        for uuid in self.due():
            try:
                await call.call(ExpungeVmInstance(uuid=uuid))
                done += 1
            except Exception as exc:  # the next round tries again
                log.warning("expunging destroyed VM %s failed: %s", uuid, exc)
        return done

    async def _loop(self) -> None:
        while True:
            await self.node.global_config.wait_interval("vm", "expungeInterval", minimum=1)
            try:
                await self.run_once()
            except Exception:
                log.exception("expunge round failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
