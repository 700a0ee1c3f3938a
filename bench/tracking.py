"""Host tracking: the node's CPU for pinging N simulated hosts every ``track_interval`` seconds.

The hosts are bulk-loaded (Connected, Simulator) before the node starts, with
``host/ping.interval`` set in the database, so the tracker does what it does after any
restart: at boot it resumes every host the database says is Connected (a ping-like check in
batches, in the background; only hosts that fail it are fully reconnected) while the API
answers, then sleeps one interval, then pings them all, and so on. While the node boots, a
client asks ``GetManagementNodeStatus`` every 0.2 s: its latencies say whether the API
answered during the boot. The measured window starts half an interval after the node went
idle and lasts one interval, so it holds exactly one ping round (checked with the tracker's
round counter); its node CPU divided by the interval is the share of one core tracking
takes. At the default size (100,000 hosts, 60 s) that is the target measured as is; below
100,000 hosts the share is extrapolated linearly and labelled so. Success: every host is
still Connected afterwards and the window held one round.

Each level is a fresh home: no VM, then a tenth of ``track_vms`` and ``track_vms`` VMs
bulk-loaded with the hosts, so the boot (socket answered, hosts resumed) and the ping share
are measured as the database grows. The simulator's usage samples are made only when asked
for (nothing asks here); the VM reconciler is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench.fastpath import Layout, bulk_load
from bench.harness import Result, Run, Samples
from bench.node import NodeProcess, wait_idle
from zmn.client import AsyncClient

FAMILY = "tracking"
TARGET_HOSTS = 100_000
PROBE_EVERY = 0.2


async def _status(client: AsyncClient) -> dict[str, Any]:
    got: dict[str, Any] = (await client.call("GetManagementNodeStatus")).get("hostTracking", {})
    return got


async def measure(run: Run, new_home: Callable[[str], NodeProcess]) -> None:
    """A fresh home (initialised, not started) for each level: no VM in the database, then
    a tenth of ``track_vms`` and ``track_vms`` (0 / 100,000 / 1,000,000 at full size)."""
    from bench.growth import levels

    print("tracking", flush=True)
    for vms in levels(run.sizes.track_vms) if run.sizes.track_vms else [0]:
        await _measure(run, new_home(f"tracking-{vms}"), vms)


def _vms_label(vms: int) -> str:
    from bench.growth import label

    return f"_{label(vms)}_vms" if vms else ""


async def _measure(run: Run, node: NodeProcess, vms: int) -> None:
    sz = run.sizes
    n, interval = sz.track_hosts, max(1, int(sz.track_interval))
    loaded = await asyncio.to_thread(
        bulk_load, node.db_url, Layout(zones=4, hosts=n, vms=vms, prefix="trk")
    )
    node.set_global_config("host", "ping.interval", str(interval), "60")
    # the VM reconciler runs every 60 s over hosts and VMs: off, so the window holds pings only
    node.set_global_config("vm", "reconcile.interval", "0", "60")
    suffix = _vms_label(vms)
    with_vms = f", {vms:,} VMs in the database" if vms else ""
    t0 = time.monotonic()
    node.start(wait=600)
    answered = time.monotonic() - t0
    try:
        async with AsyncClient(node.endpoint) as client:
            probe = Samples()
            stop = asyncio.Event()

            async def probing() -> None:  # the API while the hosts are resumed
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        await client.call("GetManagementNodeStatus")
                    except Exception as exc:
                        probe.fail(f"{type(exc).__name__}: {exc}")
                    else:
                        probe.add(time.perf_counter() - t)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), PROBE_EVERY)

            prober = asyncio.create_task(probing())
            try:
                idle_at = await wait_idle(node)
            finally:
                stop.set()
                await prober
            boot_wall = idle_at - t0
            empty = run.facts.get("empty_boot_cpu", 0.0)
            boot_cpu = max(0.0, node.cpu_seconds() - empty)
            boot = (await _status(client)).get("boot", {})
            await asyncio.sleep(max(0.0, idle_at + interval / 2 - time.monotonic()))
            rounds0 = int((await _status(client)).get("rounds", 0))
            c0, w0, rss0 = node.cpu_seconds(), time.monotonic(), node.rss_bytes()
            await asyncio.sleep(interval)
            cpu, wall = node.cpu_seconds() - c0, time.monotonic() - w0
            rss = node.rss_bytes()
            tracking = await _status(client)
            connected = (
                await client.call("QueryHost", {"conditions": ["status=Connected"], "count": True})
            )["total"]
    finally:
        node.stop()
    rounds = int(tracking.get("rounds", 0)) - rounds0
    last = tracking.get("lastRound", {})
    samples = Samples(tried=n)  # success: every host still Connected after the round
    if connected < n:
        samples.errors = [f"{n - connected} host(s) not Connected"] * (n - connected)
    if rounds != 1:
        samples.errors.append(f"the window held {rounds} ping rounds, not one")
    # one round in the window: its CPU spread over a 60 s interval, for 100,000 hosts
    share60 = cpu / 60
    at_target = share60 * TARGET_HOSTS / n if n else 0.0
    extrapolated = n < TARGET_HOSTS
    run.add(
        Result(
            FAMILY,
            f"ping_cpu_share{suffix}",
            at_target * 100,
            "% of a core" + (" (extrapolated to 100k)" if extrapolated else ""),
            samples,
            size=f"{n:,} hosts, ping every {interval} s{with_vms}",
            note=(
                f"{cpu:.2f} s node CPU in one {wall:.1f} s window holding {rounds} ping round(s);"
                f" the round pinged {last.get('pinged', 0):,} hosts in {last.get('seconds', 0):.2f} s"
                f" wall ({cpu / n * 1e6 if n else 0:.1f} µs CPU per host);"
                f" {connected:,}/{n:,} hosts Connected afterwards; node RSS"
                f" {rss0 / 2**20:.0f} -> {rss / 2**20:.0f} MiB over the window"
            ),
            goal="100,000 hosts at 60 s <= 50% of a core",
            met=at_target <= 0.5 and connected == n and rounds == 1,
            extra={"per_host_us": cpu / n * 1e6 if n else 0, "rss_mib": rss / 2**20},
        )
    )
    per_host = boot_cpu / n if n else 0
    run.add(
        Result(
            FAMILY,
            f"boot_to_idle{suffix}",
            boot_wall,
            "s",
            probe,
            size=f"{n:,} hosts{with_vms}",
            note=(
                f"node start to idle with {n:,} Connected hosts: the socket answered after"
                f" {answered:.1f} s; the tracker resumed {boot.get('resumed', 0):,} host(s) and"
                f" reconnected {boot.get('reconnected', 0):,} in {boot.get('seconds', 0):.1f} s in"
                f" the background; {boot_cpu:.1f} s CPU ({per_host * 1e6:.0f} µs per host);"
                f" GetManagementNodeStatus every {PROBE_EVERY:g} s meanwhile: {probe.ok} answers,"
                f" p99 {probe.p(99) * 1e3:.0f} ms, max {max(probe.latencies, default=0) * 1e3:.0f} ms"
                f" (the percentiles of this line); hosts{' and VMs' if vms else ''} bulk-loaded in"
                f" {loaded.seconds:.1f} s before"
                " the start; "
                + (
                    f"the CPU of an empty node's start, {empty:.1f} s, is subtracted"
                    if empty
                    else "an empty node's start was not measured in this run and is included"
                )
            ),
            extra={"boot": boot, "answered_s": answered},
        )
    )
    if interval != 60 and not vms:
        run.note(
            FAMILY,
            f"ping_cpu_share measured at a {interval} s interval and scaled to 60 s for the goal"
            " (one round per interval, so the share at 60 s is the round's CPU / 60).",
        )
