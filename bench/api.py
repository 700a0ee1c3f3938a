"""API round trip: ``Ping`` through the node against the echo server's raw round trip.

``Ping`` does no work, so the difference is what the node's request path costs (frame
decode, authentication, dispatch over the bus, reply) on top of the socket itself.
"""

from __future__ import annotations

from bench.baselines import round_trips
from bench.harness import Result, Run
from bench.node import NodeProcess

FAMILY = "api"


async def measure(run: Run, node: NodeProcess) -> None:
    print("api", flush=True)
    n = run.sizes.socket_round_trips
    wall, serial = await round_trips(node.endpoint, n // 4, 1, api="Ping")
    run.add(
        Result(
            FAMILY,
            "ping_rtt",
            serial.p(50) * 1e3,
            "ms",
            serial,
            size=f"{serial.tried:,} calls, one at a time",
            note=f"{serial.ok / wall:,.0f} calls/s",
        ).compare(run.baselines.get("socket_rtt"))
    )
    wall, many = await round_trips(node.endpoint, n, 100, api="Ping")
    run.add(
        Result(
            FAMILY,
            "ping_concurrent",
            many.ok / wall,
            "calls/s",
            many,
            size=f"{many.tried:,} calls, 100 in flight on 10 connections",
        ).compare(run.baselines.get("socket_rtt_concurrent"))
    )
