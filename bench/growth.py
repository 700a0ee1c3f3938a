"""Flat cost growth: the same creates, allocations and queries on an empty cloud and on one
already holding 100,000 and 1,000,000 VMs.

For each level a fresh node home gets ``growth_hosts`` simulator hosts in 10 zones and the
level's VMs through :func:`bench.fastpath.bulk_load` (the documented fast path: Running,
Stopped and Paused VMs with a root volume, a NIC and a UsedIp each, so every zone's L3 holds a
tenth of the VMs' addresses) before the node starts, with host pings and the VM reconciler
off (:func:`bench.query.quiet_node`: no ping round, no VM reconciler pass; the metrics
service makes the simulator's usage samples only when asked for, so it costs nothing here).
Then, through the node's socket:

* ``create_throughput``, ``create_p95`` and ``create_cpu`` (node CPU per VM, which depends
  less on what else the machine runs than the wall figures): ``growth_creates`` ``CreateVmInstance`` from
  ``growth_clients`` connections into the first loaded zone (its 10,000 hosts, its L3 with a
  tenth of the loaded VMs' addresses);
* ``query_name``: ``QueryVmInstance name=X`` (X one of the VMs just created);
* ``query_prefix``: ``QueryVmInstance name~=g-12%`` (a prefix: 111 of the created VMs);
* ``join3_count``: ``QueryVmInstance vmNics.l3Network.zone.name=Z count=true`` on a small
  zone built through the API holding the same ``growth_fixed`` VMs at every level, so the
  answer is the same and only the tables around it grow.

The node is then stopped and the same home opened by a node in this process
(:mod:`bench.inproc`) to time the two allocation messages of a create on their own, through
the node's bus as the create flow sends them: ``alloc_host`` (``AllocateHost`` in the loaded
zone, reserving, then ``ReleaseHostCapacity``) and ``alloc_ip`` (``AllocateIp`` on the loaded
L3, then ``ReleaseIp``). The first ``AllocateIp`` of an L3 reads its used addresses (this
node's copy is refreshed every 30 s): it is reported in the note, not in the percentiles.

Every figure of a loaded level is compared with the same figure on the empty cloud, measured
twice in the same run (first, and again on a fresh home after the loaded levels; the level-0
row is the mean of the two: one measurement of it moved by a third between runs); goal:
within 1.25x. ``python -m bench.growth plot JSON PNG``
draws the curve from the JSON of a run (``python -m bench --only growth --json ...``).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cloud import build_cloud
from bench.fastpath import Layout, bulk_load
from bench.harness import Result, Run, Samples, fmt, timed
from bench.node import NodeProcess, wait_idle
from bench.query import _timed_api, quiet_node
from zmn.client import AsyncClient

FAMILY = "growth"
GiB = 1024**3
GOAL = 1.25

# name -> (unit, percentile (None: the figure is a rate), higher is better, what)
FIGURES: dict[str, tuple[str, int | None, bool, str]] = {
    "create_throughput": ("VMs/s", None, True, "CreateVmInstance throughput"),
    "create_p95": ("ms p95", 95, False, "CreateVmInstance latency under load"),
    "create_cpu": ("ms CPU/VM", None, False, "node CPU per CreateVmInstance"),
    "alloc_host": ("ms p50", 50, False, "AllocateHost (reserve) through the bus"),
    "alloc_ip": ("ms p50", 50, False, "AllocateIp through the bus"),
    "query_name": ("ms p50", 50, False, "QueryVmInstance name=X"),
    "query_prefix": ("ms p50", 50, False, "QueryVmInstance name~=g-12%"),
    "join3_count": ("ms p50", 50, False, "QueryVmInstance vmNics.l3Network.zone.name=Z count"),
}


def levels(top: int) -> list[int]:
    return [0, top // 10, top]


def label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


NOTES = (
    "Each level is a fresh node home: `growth_hosts` simulator hosts in 10 zones and the level's"
    " VMs bulk-loaded by bench/fastpath.py before the start (each zone's L3 holds a tenth of the"
    " loaded VMs' addresses), host pings and the VM reconciler off (the simulator's usage samples"
    " are made only when asked for). The creates go into the first loaded zone (a tenth of the"
    " hosts, its L3 with a tenth of the addresses in use); `join3_count` counts a small zone built through the API"
    " that holds the same `growth_fixed` VMs at every level, so its answer is the same and only"
    " the tables around it grow; `alloc_host` and `alloc_ip` are the create's two allocation"
    " messages timed alone through the bus of a node opened on the same home in the bench"
    " process. The empty cloud is measured twice, first and again after the loaded levels (each"
    " time a fresh home); its figure, the reference, is the mean of the two. The ratio is the"
    " figure over that reference of the same run; for throughput, within 1.25x means at least"
    " 0.8x. The wall figures (throughput, p95) move with the machine's load; `create_cpu` (node"
    " CPU per VM) much less."
    " docs/growth.png is drawn from this run's results by bench/growth.py."
)


async def measure(run: Run, new_home: Callable[[str], NodeProcess]) -> None:
    print("growth", flush=True)
    sz = run.sizes
    run.note(FAMILY, NOTES)
    by_level = [(n, await _level(run, new_home(f"growth-{n}"), n)) for n in levels(sz.growth_top)]
    # the empty cloud once more, after the loaded levels: the reference of every ratio is the
    # mean of the two (one empty-level measurement moved by a third between runs)
    again = await _level(run, new_home("growth-0-again"), 0)
    empty = {name: reference(r, again[name]) for name, r in by_level[0][1].items()}
    for r in empty.values():
        r.goal = "the empty cloud's figure (reference)"
        run.add(r)
    for _n, figures in by_level[1:]:
        for name, r in figures.items():
            _, _, higher, _ = FIGURES[name]
            r.compare(
                empty[name],
                goal=f"within {GOAL:g}x of empty",
                check=(lambda _v, q: (q or 0) >= 1 / GOAL)
                if higher
                else (lambda _v, q: (q or 1e9) <= GOAL),
            )
            run.add(r)


def reference(first: Result, again: Result) -> Result:
    """The empty cloud's figure: the mean of its measurement before the loaded levels and the
    one after them (their samples together give the percentile columns)."""
    samples = None
    if first.samples is not None and again.samples is not None:
        samples = Samples(
            latencies=first.samples.latencies + again.samples.latencies,
            tried=first.samples.tried + again.samples.tried,
            errors=first.samples.errors + again.samples.errors,
        )
    note = (
        f"the mean of {fmt(first.value)} {first.unit} before the loaded levels and"
        f" {fmt(again.value)} after them; the first: {first.note}"
    )
    return Result(
        FAMILY,
        first.name,
        (first.value + again.value) / 2,
        first.unit,
        samples,
        size=first.size,
        note=note,
    )


async def _level(run: Run, node: NodeProcess, n: int) -> dict[str, Result]:
    sz = run.sizes
    hosts = sz.growth_hosts
    size = f"{n:,} VMs loaded, {hosts:,} hosts"
    loaded = await asyncio.to_thread(
        bulk_load, node.db_url, Layout(zones=10, hosts=hosts, vms=n, prefix="grow")
    )
    quiet_node(node)
    node.start(wait=900)
    await wait_idle(node)  # the tracker resumes the loaded hosts in the background
    out: dict[str, Result] = {}
    try:
        async with AsyncClient(node.endpoint) as admin:
            cloud = await build_cloud(admin, hosts=4, vms=sz.growth_fixed + 10)
            zone = loaded.zones[0]
            await admin.call(
                "AttachBackupStorageToZone", {"backupStorageUuid": cloud["bs"], "zoneUuid": zone[0]}
            )
            l3 = (await admin.call("QueryL3Network", {"conditions": ["name=grow-l3-0"]}))[
                "inventories"
            ][0]["uuid"]
            for i in range(sz.growth_fixed):  # the small zone: the join count's answer
                await admin.call("CreateVmInstance", cloud.vm_args(f"fixed-{i}"))
            args = {
                "imageUuid": cloud["image"],
                "instanceOfferingUuid": cloud["small"],
                "l3NetworkUuids": [l3],
            }
            await admin.call("CreateVmInstance", {"name": "warm-up", **args})
        out.update(await _creates(node, n, size, args, sz.growth_creates, sz.growth_clients))
        out.update(
            await _queries(node, n, size, sz.growth_creates, sz.growth_fixed, sz.growth_repeats)
        )
    finally:
        node.stop()
    out.update(await _allocations(node, n, size, zone[0], l3, sz.growth_repeats))
    return out


async def _creates(
    node: NodeProcess, n: int, size: str, args: dict[str, Any], sz_creates: int, sz_clients: int
) -> dict[str, Result]:
    clients = [await AsyncClient(node.endpoint).connect() for _ in range(sz_clients)]
    samples = Samples()
    todo = iter(range(sz_creates))

    async def loop(client: AsyncClient) -> None:
        for i in todo:
            await timed(
                lambda i=i: client.call("CreateVmInstance", {"name": f"g-{i}", **args}), samples
            )

    cpu0, t0 = node.cpu_seconds(), time.perf_counter()
    try:
        await asyncio.gather(*(loop(c) for c in clients))
    finally:
        wall = time.perf_counter() - t0
        for c in clients:
            await c.close()
    cpu = (node.cpu_seconds() - cpu0) / max(1, samples.ok)
    rate = samples.ok / wall if wall else 0.0
    note = f"{samples.ok:,} creates in {wall:.1f} s from {sz_clients} clients; node CPU {cpu * 1e3:.1f} ms per VM"
    where = f"{size}, {sz_creates:,} creates"
    return {
        "create_throughput": Result(
            FAMILY, f"create_throughput_{label(n)}", rate, "VMs/s", samples, size=where, note=note
        ),
        "create_cpu": Result(
            FAMILY,
            f"create_cpu_{label(n)}",
            cpu * 1e3,
            "ms CPU/VM",
            samples,
            size=where,
            note=note + " (/proc: user + system of the node process over the run, per VM made)",
        ),
        "create_p95": Result(
            FAMILY,
            f"create_p95_{label(n)}",
            samples.p(95) * 1e3,
            "ms p95",
            samples,
            size=where,
            note=note,
        ),
    }


async def _queries(
    node: NodeProcess, n: int, size: str, creates: int, fixed: int, repeats: int
) -> dict[str, Result]:
    rng = random.Random(17)
    out: dict[str, Result] = {}
    async with AsyncClient(node.endpoint) as c:

        async def by_name() -> Any:
            name = f"g-{rng.randrange(creates)}"
            got = await c.call("QueryVmInstance", {"conditions": [f"name={name}"]})
            if len(got["inventories"]) != 1:
                raise AssertionError(f"name={name}: {len(got['inventories'])} rows")
            return got

        prefix_rows = len([i for i in range(creates) if str(i).startswith("12")])

        async def by_prefix() -> Any:
            got = await c.call("QueryVmInstance", {"conditions": ["name~=g-12%"], "limit": 200})
            if len(got["inventories"]) != min(prefix_rows, 200):
                raise AssertionError(f"name~=g-12%: {len(got['inventories'])} rows")
            return got

        async def join() -> Any:
            got = await c.call(
                "QueryVmInstance",
                {"conditions": ["vmNics.l3Network.zone.name=bench-z1"], "count": True},
            )
            if got["total"] != fixed:
                raise AssertionError(f"count {got['total']} != {fixed}")
            return got

        for key, fn, what in (
            ("query_name", by_name, "`QueryVmInstance name=X` (X: one of the created VMs)"),
            (
                "query_prefix",
                by_prefix,
                f"`QueryVmInstance name~=g-12%` ({prefix_rows} of the created VMs match)",
            ),
            (
                "join3_count",
                join,
                f"`QueryVmInstance vmNics.l3Network.zone.name=bench-z1 count=true` = {fixed}"
                " (a small zone holding the same VMs at every level)",
            ),
        ):
            s, _ = await _timed_api(fn, repeats, node)
            cpu = f"; node CPU {s.cpu * 1e3:.2f} ms per call" if s.cpu is not None else ""
            out[key] = Result(
                FAMILY,
                f"{key}_{label(n)}",
                s.p(50) * 1e3,
                "ms p50",
                s,
                size=size,
                note=what + cpu,
            )
    return out


async def _allocations(
    node: NodeProcess, n: int, size: str, zone: str, l3: str, repeats: int
) -> dict[str, Result]:
    """AllocateHost and AllocateIp timed through the bus of a node in this process."""
    from bench.inproc import inproc_node
    from zmn.core.service import Call

    host_s, ip_s = Samples(), Samples()
    cold = 0.0
    async with inproc_node(node.home) as inner:
        call = Call(inner, inner.admin_principal(), "bench-growth")

        def msg(name: str, **args: Any) -> Any:
            return inner.apis.get(name)(**args)

        for i in range(repeats + 1):
            t0 = time.perf_counter()
            try:
                got = await call.call(
                    msg(
                        "AllocateHost",
                        cpuNum=1,
                        memorySize=GiB,
                        zoneUuid=zone,
                        l3NetworkUuids=[l3],
                        primaryStorageSize=10 * GiB,
                    )
                )
            except Exception as exc:
                host_s.fail(f"{type(exc).__name__}: {exc}")
                continue
            if i:  # the first call warms the statement caches
                host_s.add(time.perf_counter() - t0)
            await call.call(
                msg("ReleaseHostCapacity", hostUuid=got["host"]["uuid"], cpuNum=1, memorySize=GiB)
            )
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            try:
                got = await call.call(msg("AllocateIp", l3NetworkUuid=l3))
            except Exception as exc:
                ip_s.fail(f"{type(exc).__name__}: {exc}")
                continue
            took = time.perf_counter() - t0
            if i:
                ip_s.add(took)
            else:
                cold = took
            await call.call(msg("ReleaseIp", usedIpUuid=got["usedIp"]["uuid"]))
        # the copy of the L3's used addresses expires every USED_CACHE_SECONDS: the call after
        expired = _expire_used_ips(inner, l3)
        if expired:
            t0 = time.perf_counter()
            got = await call.call(msg("AllocateIp", l3NetworkUuid=l3))
            expired = time.perf_counter() - t0
            await call.call(msg("ReleaseIp", usedIpUuid=got["usedIp"]["uuid"]))
    return {
        "alloc_host": Result(
            FAMILY,
            f"alloc_host_{label(n)}",
            host_s.p(50) * 1e3,
            "ms p50",
            host_s,
            size=size,
            note="`AllocateHost` (1 vCPU, 1 GiB, the loaded zone's 1/10 of the hosts, reserving)"
            " then `ReleaseHostCapacity`, one at a time through the bus of a node in the bench process",
        ),
        "alloc_ip": Result(
            FAMILY,
            f"alloc_ip_{label(n)}",
            ip_s.p(50) * 1e3,
            "ms p50",
            ip_s,
            size=size,
            note=f"`AllocateIp` on the loaded zone's L3 ({n // 10:,} addresses used by loaded VMs)"
            f" then `ReleaseIp`; the first call, which reads the L3's used addresses, took"
            f" {cold * 1e3:.1f} ms (not in the percentiles); the first call after the node's"
            f" copy of them expired (every 30 s) took {expired * 1e3:.1f} ms",
        ),
    }


def _expire_used_ips(node: Any, l3: str) -> float:
    """Age the node's copy of the L3's used addresses past its 30 s; 1.0 if there was one."""
    from zmn.services.network.ipam import USED_CACHE_SECONDS

    entry = node.services["network"].used_ips.l3s.get(l3)
    if entry is None:
        return 0.0
    entry.loaded_at -= USED_CACHE_SECONDS + 1
    return 1.0


# ----------------------------------------------------------------------------- the curve


def plot(results: Path, png: Path) -> None:
    """Draw every growth figure against the number of loaded VMs, as a ratio to empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results.read_text())
    rows = [r for r in data["results"] if r["family"] == FAMILY]
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        key, _, lvl = r["name"].rpartition("_")
        series.setdefault(key, []).append((_parse(lvl), r["value"], r["ratio"] or 1.0))
    fig, (abs_ax, ratio_ax) = plt.subplots(1, 2, figsize=(12, 4.6))
    ticks = sorted({p[0] for points in series.values() for p in points})
    linthresh = min((t for t in ticks if t), default=1)
    for key, points in sorted(series.items()):
        points.sort()
        xs = [p[0] for p in points]
        unit, _, higher, _what = FIGURES.get(key, ("", None, False, key))
        if key != "create_throughput":
            abs_ax.plot(xs, [p[1] for p in points], marker="o", label=f"{key} ({unit})")
        ratios = [(1 / p[2] if higher and p[2] else p[2]) for p in points]
        ratio_ax.plot(xs, ratios, marker="o", label=key)
    for ax in (abs_ax, ratio_ax):
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xticks(ticks, [label(t) for t in ticks])
        ax.grid(True, alpha=0.3)
    abs_ax.set_yscale("log")
    abs_ax.set_xlabel("VMs already in the database")
    abs_ax.set_ylabel("ms")
    abs_ax.set_title("latency by cloud size")
    abs_ax.legend(fontsize=7)
    ratio_ax.axhline(GOAL, color="red", linestyle="--", label=f"goal {GOAL:g}x")
    ratio_ax.set_xlabel("VMs already in the database")
    ratio_ax.set_ylabel("cost / cost on the empty cloud")
    ratio_ax.set_title("cost growth (throughput inverted)")
    ratio_ax.legend(fontsize=7)
    hosts = data.get("sizes", {}).get("growth_hosts", 0)
    fig.suptitle(
        f"zmn: flat cost growth, {hosts:,} simulated hosts (python -m bench --only growth)"
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def _parse(text: str) -> int:
    if text.endswith("M"):
        return int(text[:-1]) * 1_000_000
    if text.endswith("k"):
        return int(text[:-1]) * 1_000
    return int(text)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "plot":
        print("usage: python -m bench.growth plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    plot(Path(argv[1]), Path(argv[2]))
    print(f"wrote {argv[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
