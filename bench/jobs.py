"""API jobs in flight: thousands of long API calls held at once, and the node's memory for them.

The held call is ``RebootVmInstance`` (a long API: it runs as a job) on the VMs the VM
benchmark made. The simulator is told (``SimulatorInjectFailure ... latency=L fail=false``)
to hold the first reboots of every host for L seconds, as many as the host runs at once;
every other reboot waits behind them in the host's or the VM's task queue, as a job. All
requests are sent at once over 100 connections with ``wait=true``; the node's RSS (``/proc``)
is read when the node reports them all in flight, against the RSS before. Then every reply is
awaited (the hold plus up to ``jobs_seconds`` for the queues to drain): every one of the
jobs counts in the success rate, a reply that did not come in time as a failure. The drain
(reboots per second once the hold ended, node CPU per reboot) is reported with it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import Result, Run, Samples
from bench.node import NodeProcess
from zmn.client import AsyncClient

FAMILY = "jobs"
KiB = 1024
HOST_SLOTS = 10


async def _vms(client: AsyncClient) -> list[tuple[str, str]]:
    got = await client.call(
        "QueryVmInstance",
        {"conditions": ["state=Running"], "fields": ["uuid", "hostUuid"], "limit": 100_000},
    )
    return [(v["uuid"], v["hostUuid"]) for v in got["inventories"]]


async def measure(run: Run, node: NodeProcess) -> None:
    print("jobs", flush=True)
    sz = run.sizes
    async with AsyncClient(node.endpoint) as admin:
        vms = await _vms(admin)
        if not vms:
            run.skip(
                FAMILY, "jobs_in_flight", "no running VM to reboot (the VM benchmark made none)"
            )
            return
        for uuid, _host in vms[:10]:  # warm the reboot path before the memory reading
            await admin.call("RebootVmInstance", {"uuid": uuid})
        per_host: dict[str, int] = {}
        for _uuid, host in vms:
            per_host[host] = per_host.get(host, 0) + 1
        # a host runs host/vmOperation.parallelism (10) VM operations at once: holding that
        # many reboots per host holds every other reboot behind them (host or VM queue)
        hold = min(120.0, max(4.0, sz.jobs * 0.005))
        for host, count in per_host.items():
            await admin.call(
                "SimulatorInjectFailure",
                {
                    "hostUuid": host,
                    "operation": "reboot",
                    "count": min(count, HOST_SLOTS),
                    "latency": hold,
                    "fail": False,
                },
            )
        rss0 = node.rss_bytes()
        clients = [await AsyncClient(node.endpoint).connect() for _ in range(100)]
        samples = Samples()
        finished = 0

        async def one(i: int) -> None:
            nonlocal finished
            uuid = vms[i % len(vms)][0]
            t0 = time.perf_counter()
            try:
                await clients[i % len(clients)].call("RebootVmInstance", {"uuid": uuid})
            except Exception as exc:
                samples.fail(f"{type(exc).__name__}: {exc}")
            else:
                samples.add(time.perf_counter() - t0)
            finished += 1

        t0 = time.perf_counter()
        cpu0 = node.cpu_seconds()
        tasks = [asyncio.create_task(one(i)) for i in range(sz.jobs)]
        peak, rss_peak, at = 0, rss0, 0.0
        while time.perf_counter() - t0 < hold + 30:
            await asyncio.sleep(0.2)
            status: dict[str, Any] = await admin.call("GetManagementNodeStatus")
            in_flight = int(status.get("jobsInFlight", 0))
            if in_flight > peak:
                peak, rss_peak, at = in_flight, node.rss_bytes(), time.perf_counter() - t0
            if peak >= sz.jobs or (finished and in_flight < peak):
                break
        # every reply: the held ones after the hold, then the queues drain
        budget = max(0.0, hold - (time.perf_counter() - t0)) + sz.jobs_seconds
        _done, pending = await asyncio.wait(tasks, timeout=budget)
        wall = time.perf_counter() - t0
        cpu = node.cpu_seconds() - cpu0
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for _ in pending:
            samples.fail(f"no reply within {budget:.0f} s")
        for c in clients:
            await c.close()
    run.facts["vms_for_jobs"] = len(vms)
    run.facts["hosts_with_vms"] = len(per_host)
    per_job = (rss_peak - rss0) / peak if peak else 0.0
    note = (
        f"{peak:,} jobs in flight at once {at:.1f} s after the first request; RSS"
        f" {rss0 / 2**20:.0f} -> {rss_peak / 2**20:.0f} MiB; {len(vms):,} VMs on {len(per_host)}"
        f" host(s), the first {HOST_SLOTS} reboots per host held {hold:g} s"
    )
    drained = max(0.0, wall - hold)
    note += (
        f"; {samples.ok:,}/{sz.jobs:,} replies succeeded, all {'in' if not pending else 'NOT in'}"
        f" {wall:.1f} s after the first request ({drained:.1f} s after the hold: about"
        f" {max(0, samples.ok - HOST_SLOTS * len(per_host)) / drained if drained else 0:,.0f}"
        f" reboots/s through the queues; node CPU {cpu / max(1, samples.ok) * 1e3:.1f} ms per"
        " job, from accepting it to its reply)"
    )
    if pending:
        note += (
            f"; {len(pending):,} replies had not come {budget:.0f} s later and count as failures"
            " (the node's stop interrupts them)"
        )
    ok_all = peak >= sz.jobs and not samples.errors
    run.add(
        Result(
            FAMILY,
            "memory_per_job",
            per_job / KiB,
            "KiB/job",
            samples,
            size=f"{sz.jobs:,} RebootVmInstance jobs",
            extra={"drain_s": drained, "cpu_ms_per_job": cpu / max(1, samples.ok) * 1e3},
            note=note,
            goal="<= 65 KiB per job, all in flight, no error",
            met=bool(ok_all and per_job / KiB <= 65),
        )
    )
