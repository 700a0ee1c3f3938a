"""Host tracking: ping every host, mark it Disconnected after repeated misses, reconnect it.

Every ``host/ping.interval`` seconds each host is pinged through its host type (at most
``host/connection.parallelism`` at once). ``host/ping.maxFailure`` misses in a row mark a
Connected host Disconnected; a Disconnected host that answers again is reconnected (capacity
resynchronised).

Hosts are read in keyset batches of :data:`BATCH` with a Core select of the columns a
:class:`HostRef` needs (never ORM rows), and a round is a fixed pool of
``connection.parallelism`` workers over them that yields to the event loop every
:data:`YIELD_EVERY` hosts: no task, semaphore or task-queue slot per host. A ping takes the
host's task-queue slot only when it failed (the status change is serialised with
``ReconnectHost``).

At boot (in the background: the API answers meanwhile) a host the database says is Connected
is *resumed* when its type can (:class:`~zmn.services.host.hosttype.ResumableHostType`, e.g.
the simulator): one ping-like check, in batches, no status change; only the hosts that fail
it, those not Connected, and those of types that cannot resume (KVM: its connect checks the
agent's version and publishes its VM states) are fully reconnected. A resumed host's type
gets a function that reads the VMs the database places on it, to call when it needs them
(the simulator: when the host's VMs are first looked at), so a boot reads no VM row: with
1,000,000 VMs it read them all, in selects that held the event loop, and took 265 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.core.service import Call
from zmn.services.host.hosttype import HostRef, HostType, HostTypeRegistry, ResumableHostType
from zmn.services.host.models import HostVO
from zmn.services.host.ops import reconnect, set_status
from zmn.services.host.placed import placed_vms

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.host.tracker")

BATCH = 1000  # hosts read per select
YIELD_EVERY = 25  # hosts a worker handles before it lets the loop run other work (API calls)

_COLUMNS = (
    HostVO.uuid,
    HostVO.name,
    HostVO.managementIp,
    HostVO.clusterUuid,
    HostVO.hypervisorType,
    HostVO.totalCpuCapacity,
    HostVO.totalMemoryCapacity,
    HostVO.status,
)


class HostTracker:
    def __init__(self, node: Node, types: HostTypeRegistry) -> None:
        self.node = node
        self.types = types
        self.misses: dict[str, int] = {}
        self.boot_summary: dict[str, Any] = {}  # what the last boot did (hosts, seconds ...)
        self.rounds = 0  # ping rounds finished since the start
        self.last_round: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    def _call(self, api: str) -> Call:
        return Call(self.node, self.node.admin_principal(), api)

    def _config(self, name: str) -> int:
        return int(self.node.global_config.get("host", name))

    # ----------------------------------------------------------------- reading hosts

    def _batches(
        self, statuses: tuple[str, ...] | None = None
    ) -> Iterator[list[tuple[HostRef, str]]]:
        """(ref, status) of the owned hosts, in keyset batches by UUID (each its own read)."""
        owns = self.node.owns_resource
        after = ""
        while True:
            stmt = select(*_COLUMNS).where(HostVO.uuid > after)
            if statuses:
                stmt = stmt.where(HostVO.status.in_(statuses))
            with self.node.db.tx() as s:
                rows = s.execute(stmt.order_by(HostVO.uuid).limit(BATCH)).all()
            if not rows:
                return
            after = rows[-1][0]
            yield [
                (HostRef(u, n, ip, c, t, cpu or 0, mem or 0), st)
                for u, n, ip, c, t, cpu, mem, st in rows
                if owns(u)
            ]
            if len(rows) < BATCH:
                return

    def _refs(self, statuses: tuple[str, ...] | None = None) -> Iterator[HostRef]:
        for batch in self._batches(statuses):
            for ref, _status in batch:
                yield ref

    def _hosts(self, statuses: tuple[str, ...] | None = None) -> list[HostRef]:
        return list(self._refs(statuses))

    def _placed_on(self, host_uuid: str) -> list[tuple[str, str, int, int]]:
        """(uuid, state, vCPUs, bytes) of the VMs placed on one host (one indexed select)."""
        with self.node.db.tx() as s:
            return placed_vms(self.node, s, host_uuid)

    # ----------------------------------------------------------------- running over hosts

    async def _pool(self, items: Iterable[Any], work: Callable[[Any], Awaitable[None]]) -> None:
        """``work`` on every item by ``connection.parallelism`` workers sharing one iterator."""
        it = iter(items)

        async def worker() -> None:
            done = 0
            for item in it:
                await work(item)
                done += 1
                if done % YIELD_EVERY == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(
            *(worker() for _ in range(max(1, self._config("connection.parallelism"))))
        )

    async def _each(self, refs: Iterable[HostRef], work: str) -> None:
        """Reconnect or revive hosts, each under its task-queue slot (the slow, rare paths)."""

        async def one(ref: HostRef) -> None:
            async with self.node.queues.slot(f"host:{ref.uuid}", 1, work):
                try:
                    if work == "reconnect":
                        await self.reconnect(ref)
                    else:
                        await self.revive(ref)
                except Exception:
                    log.exception("%s of host %s failed", work, ref.uuid)

        await self._pool(refs, one)

    def _type(self, types: dict[str, HostType], ref: HostRef) -> HostType:
        found = types.get(ref.hypervisorType)
        return found if found is not None else self.types.get(ref.hypervisorType)

    # ----------------------------------------------------------------- one host

    async def reconnect(self, ref: HostRef) -> None:
        try:
            await reconnect(self._call("ReconnectHost"), self.types.get(ref.hypervisorType), ref)
            self.misses.pop(ref.uuid, None)
        except Exception as exc:
            log.warning("host %s (%s) did not reconnect: %s", ref.name, ref.managementIp, exc)

    async def ping(self, ref: HostRef, host_type: HostType | None = None) -> None:
        try:
            await (host_type or self.types.get(ref.hypervisorType)).ping(ref)
        except Exception:
            await self._missed(ref)
            return
        if self.misses:
            self.misses.pop(ref.uuid, None)

    async def _missed(self, ref: HostRef) -> None:
        misses = self.misses[ref.uuid] = self.misses.get(ref.uuid, 0) + 1
        if misses < self._config("ping.maxFailure"):
            return
        # serialised with ReconnectHost, which forgets the misses when it brought the host back
        async with self.node.queues.slot(f"host:{ref.uuid}", 1, "ping"):
            if self.misses.get(ref.uuid, 0) >= self._config("ping.maxFailure"):
                try:
                    await set_status(self._call("PingHost"), ref.uuid, "disconnected")
                except Exception:
                    log.exception("marking host %s Disconnected failed", ref.uuid)

    async def revive(self, ref: HostRef) -> None:
        """A Disconnected host is reconnected once it answers a ping again."""
        try:
            await self.types.get(ref.hypervisorType).ping(ref)
        except Exception:
            return
        await self.reconnect(ref)

    # ----------------------------------------------------------------- rounds

    async def reconnect_all(self) -> None:
        await self._each(self._refs(), "reconnect")

    def describe(self) -> dict[str, Any]:
        return {"boot": self.boot_summary, "rounds": self.rounds, "lastRound": self.last_round}

    async def ping_all(self) -> None:
        """One round: ping Connected hosts, try to bring Disconnected ones back."""
        started = time.monotonic()
        types = self.types.all()
        pinged = 0

        async def one(ref: HostRef) -> None:
            nonlocal pinged
            pinged += 1
            try:
                host_type = self._type(types, ref)
            except Exception:
                log.exception("ping of host %s failed", ref.uuid)
                return
            await self.ping(ref, host_type)

        await self._pool(self._refs(("Connected",)), one)
        await self._each(self._refs(("Disconnected",)), "revive")
        self.rounds += 1
        self.last_round = {
            "pinged": pinged,
            "seconds": round(time.monotonic() - started, 3),
            "finishedAt": time.time(),
        }

    async def boot(self) -> None:
        """After the node started: resume Connected hosts cheaply, reconnect the others."""
        started = time.monotonic()
        types = self.types.all()
        resumable: dict[str, ResumableHostType] = {
            name: t for name, t in types.items() if isinstance(t, ResumableHostType)
        }
        full: list[HostRef] = []
        failed: list[HostRef] = []
        counts = {"hosts": 0, "resumed": 0}

        async def resume(ref: HostRef) -> None:
            try:
                await resumable[ref.hypervisorType].resume(
                    ref, functools.partial(self._placed_on, ref.uuid)
                )
            except Exception as exc:
                log.info("host %s did not answer at boot (%s); reconnecting it", ref.uuid, exc)
                failed.append(ref)
            else:
                counts["resumed"] += 1

        for batch in self._batches():
            counts["hosts"] += len(batch)
            refs = []
            for ref, status in batch:
                if status == "Connected" and ref.hypervisorType in resumable:
                    refs.append(ref)
                else:
                    full.append(ref)
            await self._pool(refs, resume)
        resumed_at = time.monotonic()
        await self._each([*failed, *full], "reconnect")
        self.boot_summary = {
            **counts,
            "reconnected": len(failed) + len(full),
            "resumeSeconds": round(resumed_at - started, 3),
            "seconds": round(time.monotonic() - started, 3),
        }
        log.info(
            "boot: %d host(s): %d resumed, %d reconnected in %.2fs",
            counts["hosts"],
            counts["resumed"],
            len(failed) + len(full),
            time.monotonic() - started,
        )

    async def _loop(self) -> None:
        try:
            await self.boot()
        except Exception:
            log.exception("host boot round failed")
        while True:
            await self.node.global_config.wait_interval("host", "ping.interval")
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
