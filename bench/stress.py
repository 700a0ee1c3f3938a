"""ZStack's stress test on one node: ``stress_vms`` concurrent ``CreateVmInstance`` requests
against ``stress_hosts`` simulated hosts.

The hosts (Connected simulator hosts in 10 zones, each zone with its cluster, L2/L3 network
and primary storage) are bulk-loaded by :mod:`bench.fastpath` before the node starts, with
host pings and the VM reconciler off (:func:`bench.query.quiet_node`; the simulator's usage
samples are made only when asked for), and the node's
``api.limit.inflight`` raised so that a connection may hold all its requests at once. A
backup storage, an image and an instance offering are made through the API.

Then ``stress_procs`` client processes, each with ``stress_conns`` ``AsyncClient``
connections, send their share of the creates all at once (pipelined: every request is
written before any reply is awaited), spread round robin over the 10 zones' L3 networks,
and wait for every reply. Reported: every request answered (a reply, success or error, for
each), the errors (goal: 0), ``CheckConsistency`` afterwards (goal: 0 violations; it runs the
node's own checkers: capacity ledgers, IPAM, VM states, NICs ...), the VMs in the database
(= the successes), the node's peak RSS (sampled every second from ``/proc``; goal < 2 GiB),
the time from the first request to the last reply (the drain) and the node's CPU for it.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from typing import Any

from bench.cloud import build_cloud
from bench.fastpath import Layout, bulk_load
from bench.harness import Result, Run, Samples
from bench.machine import load_average
from bench.node import NodeProcess, wait_idle
from bench.query import quiet_node
from zmn.client import AsyncClient

FAMILY = "stress"
GiB = 1024**3
RSS_GOAL = 2 * GiB


def _client_process(
    endpoint: str, conns: int, jobs: list[tuple[str, dict[str, Any]]], out: Any, go: Any
) -> None:
    """One client process: ``conns`` connections, every request of ``jobs`` sent at once."""

    async def main() -> dict[str, Any]:
        clients = [await AsyncClient(endpoint).connect() for _ in range(conns)]
        latencies: list[float] = []
        errors: list[str] = []
        out.put(("ready", os.getpid()))
        while not go.is_set():  # every process connected before the first request
            await asyncio.sleep(0.05)

        async def one(client: AsyncClient, name: str, args: dict[str, Any]) -> None:
            t0 = time.perf_counter()
            try:
                await client.call("CreateVmInstance", {"name": name, **args})
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append(time.perf_counter() - t0)

        t0 = time.time()
        await asyncio.gather(
            *(one(clients[i % conns], name, args) for i, (name, args) in enumerate(jobs))
        )
        for c in clients:
            await c.close()
        return {"latencies": latencies, "errors": errors, "first": t0, "last": time.time()}

    try:
        out.put(("done", asyncio.run(main())))
    except Exception as exc:  # reported by the parent as a failed process
        out.put(("crashed", f"{type(exc).__name__}: {exc}"))


async def measure(run: Run, node: NodeProcess) -> None:
    """``node``: an initialised home, not started."""
    print("stress", flush=True)
    sz = run.sizes
    n, hosts = sz.stress_vms, sz.stress_hosts
    procs, conns = sz.stress_procs, sz.stress_conns
    per_conn = -(-n // (procs * conns))
    node.conf["api.limit.inflight"] = str(max(32, per_conn))
    (node.home / "zmn.conf").write_text("".join(f"{k}={v}\n" for k, v in node.conf.items()))
    loaded = await asyncio.to_thread(
        bulk_load, node.db_url, Layout(zones=10, hosts=hosts, vms=0, prefix="st")
    )
    quiet_node(node)
    node.start(wait=900)
    try:
        await wait_idle(node)  # the tracker resumes the loaded hosts in the background
        async with AsyncClient(node.endpoint) as admin:
            cloud = await build_cloud(admin, hosts=1, vms=10)
            l3s = []
            for uuid, _name in loaded.zones:
                await admin.call(
                    "AttachBackupStorageToZone",
                    {"backupStorageUuid": cloud["bs"], "zoneUuid": uuid},
                )
            got = await admin.call("QueryL3Network", {"conditions": ["name~=st-l3-%"]})
            l3s = sorted(i["uuid"] for i in got["inventories"])
            base = {"imageUuid": cloud["image"], "instanceOfferingUuid": cloud["small"]}
            jobs = [(f"s-{i}", {**base, "l3NetworkUuids": [l3s[i % len(l3s)]]}) for i in range(n)]
            rss0 = node.rss_bytes()
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            go = ctx.Event()
            workers = [
                ctx.Process(
                    target=_client_process,
                    args=(node.endpoint, conns, jobs[p::procs], queue, go),
                    daemon=True,
                )
                for p in range(procs)
            ]
            for w in workers:
                w.start()
            results: list[dict[str, Any]] = []
            crashed: list[str] = []
            try:
                ready = 0
                while ready < procs:
                    kind, value = await asyncio.to_thread(queue.get, True, 300)
                    if kind == "ready":
                        ready += 1
                    elif kind == "crashed":
                        crashed.append(value)
                        ready += 1
                load0 = load_average()
                cpu0, t0 = node.cpu_seconds(), time.time()
                go.set()
                peak = rss0
                pending = procs - len(crashed)
                while pending:
                    try:
                        kind, value = await asyncio.to_thread(queue.get, True, 1.0)
                    except Exception:  # queue.Empty: sample the node's memory meanwhile
                        peak = max(peak, node.rss_bytes())
                        continue
                    peak = max(peak, node.rss_bytes())
                    pending -= 1
                    if kind == "done":
                        results.append(value)
                    else:
                        crashed.append(value)
                cpu = node.cpu_seconds() - cpu0
                load1 = load_average()
            finally:
                for w in workers:
                    w.join(timeout=30)
                    if w.is_alive():
                        w.kill()
            last = max((r["last"] for r in results), default=time.time())
            drain = last - t0
            samples = Samples()
            for r in results:
                samples.latencies.extend(r["latencies"])
                samples.errors.extend(r["errors"])
            answered = sum(len(r["latencies"]) + len(r["errors"]) for r in results)
            samples.tried = n
            samples.errors.extend(["no reply"] * max(0, n - answered))
            print(
                f"  stress: {answered:,}/{n:,} answered, {len(samples.errors)} error(s), drained in"
                f" {drain:.1f} s, node CPU {cpu:.0f} s, peak RSS {peak / 2**20:,.0f} MiB",
                flush=True,
            )
        # a new connection: the admin one sat idle through the drain (api.timeout.idle)
        async with AsyncClient(node.endpoint) as admin:
            check = await admin.call("CheckConsistency")
            violations = check.get("violations", [])
            made = (
                await admin.call("QueryVmInstance", {"conditions": ["name~=s-%"], "count": True})
            )["total"]
            running = (
                await admin.call(
                    "QueryVmInstance",
                    {"conditions": ["name~=s-%", "state=Running"], "count": True},
                )
            )["total"]
    finally:
        node.stop()
    size = f"{n:,} creates, {hosts:,} hosts, {procs} processes x {conns} connections"
    ok = samples.ok
    note = (
        f"{answered:,}/{n:,} requests answered, {len(samples.errors)} error(s)"
        + (f" (e.g. {samples.errors[0]})" if samples.errors else "")
        + (f"; {len(crashed)} client process(es) crashed: {crashed[0]}" if crashed else "")
        + f"; {len(violations)} consistency violation(s) (CheckConsistency afterwards)"
        + (f", e.g. {violations[0]}" if violations else "")
        + f"; {made:,} VMs in the database, {running:,} Running; all {n:,} sent at once,"
        f" up to {per_conn:,} in flight per connection (api.limit.inflight={max(32, per_conn)});"
        f" drained in {drain:.1f} s ({ok / drain if drain else 0:,.0f} creates/s); node CPU"
        f" {cpu:.0f} s ({cpu / max(1, ok) * 1e3:.1f} ms per VM); node RSS {rss0 / 2**20:,.0f} MiB"
        f" before, peak {peak / 2**20:,.0f} MiB; load average {load0} before, {load1} after"
    )
    all_good = answered == n and not samples.errors and not violations and made == ok
    run.add(
        Result(
            FAMILY,
            "drain_time",
            drain,
            "s",
            samples,
            size=size,
            note=note,
            goal="every request answered, 0 errors, 0 consistency violations",
            met=all_good,
            extra={"violations": len(violations), "made": made, "answered": answered},
        )
    )
    run.add(
        Result(
            FAMILY,
            "node_rss_peak",
            peak / 2**20,
            "MiB",
            size=size,
            note=f"sampled every second from /proc while {n:,} creates were in flight; {rss0 / 2**20:,.0f} MiB before",
            goal="< 2 GiB",
            met=peak < RSS_GOAL,
        )
    )
