"""Synthetic samples of simulator hosts and their Running VMs, computed when they are asked for.

Nothing runs on a timer: ``GetHostMetrics``, ``GetVmMetrics`` and the Prometheus scrape call
:meth:`SimulatedSampler.catch_up_hosts` (or ``catch_up_vms``) for the resources they answer
about, which fills the window with the samples a round every ``metrics/simulator.interval``
seconds would have taken: one at every multiple of the interval since the last one given
(at most a window's worth; :data:`FIRST_SAMPLES` for a host asked about for the first time),
none before the node started or the resource was created. A
host is caught up together with its Running VMs, so its figures stay the sums of theirs at
every sample. A round over 100,000 hosts every 10 s cost more than half a core whether
anyone looked or not; now the cost follows the questions (a dashboard page, one host).

The reads are Core selects on at most :data:`BATCH` UUIDs (``IN`` lists bounded by the API's
1,000); a scrape walks every simulator host in keyset batches that yield to the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.core.db import in_slices
from zmn.services.metrics.synthetic import SyntheticUsage

if TYPE_CHECKING:
    from zmn.core.node import Node

BATCH = 1000  # hosts read per select
# samples made for a host asked about for the first time (enough for rates; the window then
# fills as it is asked again): a first page of 1,000 hosts is not a window's worth of each
FIRST_SAMPLES = 3
Ingest = Callable[[str, str, float, dict[str, float], str | None], None]


def _epoch(value: dt.datetime | None) -> float:
    if value is None:
        return 0.0
    return value.replace(tzinfo=dt.UTC).timestamp() if value.tzinfo is None else value.timestamp()


def ticks(since: float, now: float, interval: float, limit: int) -> list[float]:
    """The multiples of ``interval`` in (since, now], the last ``limit`` of them."""
    last = math.floor(now / interval)
    first = max(math.floor(since / interval) + 1, last - limit + 1)
    return [k * interval for k in range(first, last + 1)]


class SimulatedSampler:
    """Catches simulator hosts (with their Running VMs) up to now, on demand."""

    def __init__(self, node: Node, synthetic: SyntheticUsage, ingest: Ingest) -> None:
        self.node = node
        self.synthetic = synthetic
        self.ingest = ingest
        self.done: dict[str, float] = {}  # host UUID -> time of its last sample

    def _models(self) -> tuple[Any, Any] | None:
        types = self.node.resources.types
        host_t, vm_t = types.get("Host"), types.get("VmInstance")
        if host_t is None:
            return None
        return host_t.model, vm_t.model if vm_t is not None else None

    def _interval(self) -> float:
        return float(self.node.global_config.get("metrics", "simulator.interval"))

    def _window(self) -> int:
        return int(self.node.global_config.get("metrics", "window.samples"))

    def catch_up_vms(self, vm_uuids: Iterable[str], now: float | None = None) -> None:
        """Catch up the hosts of these VMs (a VM's samples are taken with its host's)."""
        models = self._models()
        uuids = list(vm_uuids)
        if models is None or models[1] is None or not uuids:
            return
        vm = models[1]
        hosts: set[str] = set()
        for part in in_slices(uuids, BATCH):
            with self.node.db.tx() as s:
                hosts.update(
                    h
                    for (h,) in s.execute(
                        select(vm.hostUuid).where(vm.uuid.in_(part), vm.state == "Running")
                    )
                    if h
                )
        self.catch_up_hosts(sorted(hosts), now)

    def catch_up_hosts(
        self, host_uuids: Iterable[str], now: float | None = None, limit: int | None = None
    ) -> None:
        """Samples for these hosts (those that are Connected simulator hosts) and their
        Running VMs at every tick since their last sample (at most ``limit``, by default a
        window's worth)."""
        models = self._models()
        uuids = list(host_uuids)
        if models is None or not uuids:
            return
        now = time.time() if now is None else now
        interval, limit = self._interval(), limit or self._window()
        host, vm = models
        for part in in_slices(uuids, BATCH):
            with self.node.db.tx() as s:
                hosts = s.execute(
                    select(host.uuid, host.cpuNum, host.totalMemoryCapacity, host.createDate).where(
                        host.uuid.in_(part),
                        host.hypervisorType == "Simulator",
                        host.status == "Connected",
                    )
                ).all()
                vms = (
                    s.execute(
                        select(vm.hostUuid, vm.uuid, vm.cpuNum, vm.memorySize, vm.createDate).where(
                            vm.hostUuid.in_([h[0] for h in hosts]), vm.state == "Running"
                        )
                    ).all()
                    if vm is not None and hosts
                    else []
                )
            self._sample(hosts, vms, now, interval, limit)

    async def catch_up_all(self, limit: int = 1) -> None:
        """Every Connected simulator host, in keyset batches that yield (the scrape)."""
        models = self._models()
        if models is None:
            return
        host = models[0]
        now, after = time.time(), ""
        while True:
            with self.node.db.tx() as s:
                batch = list(
                    s.scalars(
                        select(host.uuid)
                        .where(
                            host.uuid > after,
                            host.hypervisorType == "Simulator",
                            host.status == "Connected",
                        )
                        .order_by(host.uuid)
                        .limit(BATCH)
                    )
                )
            if not batch:
                return
            self.catch_up_hosts(batch, now, limit)
            after = batch[-1]
            await asyncio.sleep(0)

    def _sample(
        self,
        hosts: Sequence[Any],
        vms: Sequence[Any],
        now: float,
        interval: float,
        limit: int,
    ) -> None:
        started = float(getattr(self.node, "started_at", 0.0) or 0.0)
        by_host: dict[str, list[tuple[str, int, int, float]]] = {}
        for host_uuid, uuid, cpu, memory, created in vms:
            by_host.setdefault(host_uuid, []).append((uuid, int(cpu), int(memory), _epoch(created)))
        usage, ingest = self.synthetic, self.ingest
        for uuid, cpu, memory, created in hosts:
            last = self.done.get(uuid)
            since = last if last is not None else max(started, _epoch(created))
            due = ticks(since, now, interval, limit if last is not None else FIRST_SAMPLES)
            if not due:
                continue
            cpu, memory = int(cpu or 0), int(memory or 0)
            guests = by_host.get(uuid, [])
            previous = last
            for at in due:
                dt_ = at - previous if previous is not None else interval
                samples = []
                for vm_uuid, vm_cpu, vm_memory, vm_created in guests:
                    if vm_created > at:
                        continue  # not there yet at this sample
                    values = usage.vm(vm_uuid, vm_cpu, vm_memory, dt_)
                    samples.append(values)
                    ingest("vm", vm_uuid, at, values, uuid)
                ingest("host", uuid, at, usage.host(uuid, cpu, memory, samples, dt_), None)
                previous = at
            self.done[uuid] = due[-1]

    def forget_except(self, hosts: set[str]) -> None:
        self.done = {u: t for u, t in self.done.items() if u in hosts}
