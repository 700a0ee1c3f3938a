"""Host tracking: the node's CPU for pinging N simulated hosts every ``track_interval`` seconds.

The hosts are bulk-loaded (Connected, Simulator) before the node starts, with
``host/ping.interval`` set in the database, so the tracker does what it does after any
restart: reconnect every host at boot (the "boot reconnect", measured until the node is
idle), then sleep one interval, then ping them all, and so on. The measured window starts
half an interval after the boot reconnect ended and lasts one interval, so it holds exactly
one ping round; its node CPU divided by the interval is the share of one core tracking takes.
When N is below 100,000 the share for 100,000 is extrapolated linearly (the round is a loop
over hosts) and labelled so. Success: every host is still Connected afterwards.
"""

from __future__ import annotations

import asyncio
import time

from bench.fastpath import Layout, bulk_load
from bench.harness import Result, Run, Samples
from bench.node import NodeProcess, wait_idle
from zmn.client import AsyncClient

FAMILY = "tracking"
TARGET_HOSTS = 100_000


async def measure(run: Run, node: NodeProcess) -> None:
    """``node``: an initialised home, not started."""
    print("tracking", flush=True)
    sz = run.sizes
    n, interval = sz.track_hosts, max(1, int(sz.track_interval))
    loaded = await asyncio.to_thread(
        bulk_load, node.db_url, Layout(zones=4, hosts=n, vms=0, prefix="trk")
    )
    node.set_global_config("host", "ping.interval", str(interval), "60")
    # the VM reconciler runs every 60 s over hosts and VMs: off, so the window holds pings only
    node.set_global_config("vm", "reconcile.interval", "0", "60")
    t0 = time.monotonic()
    node.start(wait=1800)
    try:
        idle_at = await wait_idle(node)
        boot_wall = idle_at - t0
        empty = run.facts.get("empty_boot_cpu", 0.0)
        boot_cpu = max(0.0, node.cpu_seconds() - empty)
        await asyncio.sleep(max(0.0, idle_at + interval / 2 - time.monotonic()))
        c0, w0 = node.cpu_seconds(), time.monotonic()
        await asyncio.sleep(interval)
        cpu, wall = node.cpu_seconds() - c0, time.monotonic() - w0
        async with AsyncClient(node.endpoint) as client:
            connected = (
                await client.call("QueryHost", {"conditions": ["status=Connected"], "count": True})
            )["total"]
        samples = Samples(tried=n)  # success: every host still Connected after the round
        if connected < n:
            samples.errors = [f"{n - connected} host(s) not Connected"] * (n - connected)
        # one round in the window: its CPU spread over a 60 s interval, for 100,000 hosts
        share60 = cpu / 60
        at_target = share60 * TARGET_HOSTS / n if n else 0.0
        extrapolated = n < TARGET_HOSTS
        run.add(
            Result(
                FAMILY,
                "ping_cpu_share",
                at_target * 100,
                "% of a core" + (" (extrapolated to 100k)" if extrapolated else ""),
                samples,
                size=f"{n:,} hosts, ping every {interval} s",
                note=(
                    f"{cpu:.2f} s node CPU in one {wall:.1f} s window holding one ping round of {n:,}"
                    f" hosts ({cpu / n * 1e6 if n else 0:.0f} µs per host per round);"
                    f" {connected:,}/{n:,} hosts Connected afterwards"
                ),
                goal="100,000 hosts at 60 s <= 50% of a core",
                met=at_target <= 0.5 and connected == n,
                extra={"per_host_us": cpu / n * 1e6 if n else 0},
            )
        )
        per_host = boot_cpu / n if n else 0
        run.add(
            Result(
                FAMILY,
                "boot_reconnect",
                boot_wall,
                "s",
                size=f"{n:,} hosts",
                note=(
                    f"node start to idle with {n:,} hosts: {boot_cpu:.1f} s CPU, {per_host * 1e3:.2f} ms per"
                    f" host; 100,000 hosts would take about {per_host * TARGET_HOSTS:,.0f} s of a core"
                    f" (hosts bulk-loaded in {loaded.seconds:.1f} s before the start; "
                    + (
                        f"the CPU of an empty node's start, {empty:.1f} s, is subtracted)"
                        if empty
                        else "an empty node's start was not measured in this run and is included)"
                    )
                ),
            )
        )
        if interval != 60:
            run.note(
                FAMILY,
                f"ping_cpu_share measured at a {interval} s interval and scaled to 60 s for the goal"
                " (one round per interval, so the share at 60 s is the round's CPU / 60).",
            )
    finally:
        node.stop()
