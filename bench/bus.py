"""In-process bus: request/reply messages per second through a real node's ``LocalBus``.

Many concurrent senders send to a bench service registered on the node's bus; the handler
takes the resource's task-queue slot (``node.queues``, level 1, as a VM's operations do),
yields once inside it so other messages interleave, and records the order it ran them in.
FIFO holds when, for every resource, the handler saw the messages in the order they were
sent. The baseline is the same handler awaited directly, without the bus.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import Result, Run, Samples
from bench.inproc import inproc_node
from zmn.core.bus import Envelope

FAMILY = "bus"


class Recorder:
    """The bench service: per-resource FIFO through the node's task queues."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.seen: dict[str, list[int]] = {}

    async def handle(self, env: Envelope) -> Any:
        resource, seq = env.message
        async with self.node.queues.slot(f"bench:{resource}", 1, env.api):
            await asyncio.sleep(0)
            self.seen.setdefault(resource, []).append(seq)
        return seq

    def violations(self) -> int:
        return sum(1 for seqs in self.seen.values() for a, b in itertools.pairwise(seqs) if b <= a)


async def _drive(
    count: int, senders: int, resources: int, send: Callable[[str, int], Awaitable[Any]]
) -> tuple[float, Samples]:
    """``senders`` coroutines send ``count`` messages round-robin over ``resources``."""
    samples = Samples()
    next_seq: dict[str, int] = {}
    todo = iter(range(count))

    async def sender() -> None:
        for i in todo:
            resource = f"r{i % resources}"
            seq = next_seq[resource] = next_seq.get(resource, -1) + 1  # order of sending
            t0 = time.perf_counter()
            try:
                got = await send(resource, seq)
            except Exception as exc:
                samples.fail(f"{type(exc).__name__}: {exc}")
                continue
            if got != seq:
                samples.fail(f"reply {got} to message {seq}")
                continue
            samples.add(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(max(1, senders))))
    return time.perf_counter() - t0, samples


async def measure(run: Run) -> None:
    print("bus", flush=True)
    sz = run.sizes
    async with inproc_node(run.workdir / "bus-home", conf={"log.level": "WARNING"}) as node:
        direct = Recorder(node)
        principal = node.admin_principal()
        warm = min(2_000, sz.bus_messages)

        async def call_direct(resource: str, seq: int) -> Any:
            return await direct.handle(Envelope("BenchEcho", (resource, seq), principal))

        await _drive(warm, sz.bus_senders, sz.bus_resources, call_direct)
        direct.seen.clear()
        wall, s = await _drive(sz.bus_messages, sz.bus_senders, sz.bus_resources, call_direct)
        base = run.baseline(
            Result(
                FAMILY,
                "direct_await",
                s.ok / wall,
                "msgs/s",
                s,
                note="the bus handler awaited directly",
            )
        )
        rec = Recorder(node)
        node.bus.serve("bench", rec.handle)
        warm_rec = Recorder(node)
        node.bus.serve("bench-warm", warm_rec.handle)

        async def warm_bus(resource: str, seq: int) -> Any:
            return await node.bus.call(
                "bench-warm", Envelope("BenchEcho", (resource, seq), principal)
            )

        await _drive(warm, sz.bus_senders, sz.bus_resources, warm_bus)

        async def call_bus(resource: str, seq: int) -> Any:
            return await node.bus.call("bench", Envelope("BenchEcho", (resource, seq), principal))

        wall, s = await _drive(sz.bus_messages, sz.bus_senders, sz.bus_resources, call_bus)
        bad = rec.violations()
        if bad:
            s.errors.extend(["FIFO violation"] * bad)
            s.tried += bad
        run.add(
            Result(
                FAMILY,
                "local_bus_request_reply",
                s.ok / wall,
                "msgs/s",
                s,
                size=f"{sz.bus_messages:,} msgs, {sz.bus_senders} senders, {sz.bus_resources:,} resources",
                note=f"per-resource FIFO through node.queues: {bad} violation(s)",
            ).compare(
                base,
                goal=">= 20,000 msgs/s, no FIFO violation",
                check=lambda v, _r: v >= 20_000 and not bad,
            )
        )
