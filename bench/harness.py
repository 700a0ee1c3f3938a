"""Results, percentiles, timing helpers and the run context every benchmark family shares.

A :class:`Result` is one line of the report: the absolute figure, the baseline it is compared
with (measured in the same run), the ratio, the goal and whether it was met, latency
percentiles and the success rate, as Rally reports them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank on the sorted values); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Samples:
    """Latencies (seconds) of the calls that succeeded, and how many were tried."""

    latencies: list[float] = field(default_factory=list)
    tried: int = 0
    errors: list[str] = field(default_factory=list)
    cpu: float | None = None  # the node's CPU seconds per call, when measured

    @property
    def ok(self) -> int:
        return self.tried - len(self.errors)

    @property
    def success(self) -> float:
        return self.ok / self.tried if self.tried else 0.0

    def add(self, seconds: float) -> None:
        self.tried += 1
        self.latencies.append(seconds)

    def fail(self, error: str) -> None:
        self.tried += 1
        self.errors.append(error)

    def p(self, q: float) -> float:
        return pct(self.latencies, q)

    @property
    def mean(self) -> float:
        return sum(self.latencies) / len(self.latencies) if self.latencies else 0.0


@dataclass
class Result:
    """One benchmark (or baseline) figure with everything the report shows about it."""

    family: str
    name: str
    value: float
    unit: str
    samples: Samples | None = None
    baseline: Result | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""
    size: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def compare(
        self,
        baseline: Result | None,
        *,
        goal: str = "",
        check: Callable[[float, float | None], bool] | None = None,
    ) -> Result:
        """Set the baseline, the ratio value/baseline, and whether ``check`` holds."""
        self.baseline = baseline
        if baseline is not None and baseline.value:
            self.ratio = self.value / baseline.value
        self.goal = goal
        if check is not None:
            self.met = bool(check(self.value, self.ratio))
        return self

    def line(self) -> str:
        parts = [f"{self.family}/{self.name}: {fmt(self.value)} {self.unit}"]
        if self.ratio is not None and self.baseline is not None:
            parts.append(f"= {self.ratio:.3g}x {self.baseline.name}")
        if self.samples is not None and self.samples.latencies:
            s = self.samples
            parts.append(
                f"p50 {fmt(s.p(50) * 1e3)} ms p95 {fmt(s.p(95) * 1e3)} ms p99 {fmt(s.p(99) * 1e3)} ms"
            )
        if self.samples is not None:
            parts.append(f"ok {self.samples.ok}/{self.samples.tried}")
        if self.goal:
            verdict = {True: "met", False: "MISSED", None: "n/a"}[self.met]
            parts.append(f"goal {self.goal}: {verdict}")
        if self.note:
            parts.append(f"({self.note})")
        return "  ".join(parts)


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


@dataclass
class Skipped:
    """A benchmark that could not run here, and why (reported, never silently dropped)."""

    family: str
    name: str
    reason: str


@dataclass
class Sizes:
    """Every size a benchmark takes; ``--ci`` shrinks them, flags override one by one."""

    vms: int = 10_000  # VM create throughput
    vm_clients: int = 100
    vm_seconds: float = 120.0  # the concurrent run stops taking new creates after this
    single_creates: int = 50  # idle-node single creates for p50
    lean_vms: int = 1_000  # lean reference: VMs per mode
    query_hosts: int = 100_000
    query_vms: int = 1_000_000
    query_repeats: int = 200
    jobs: int = 10_000
    jobs_seconds: float = 300.0  # after the hold, how long the queued jobs may take to drain
    track_hosts: int = 100_000  # the target, measured as is (bulk-loaded, resumed at boot)
    track_interval: float = 60.0  # the target's interval: the window holds one real round
    track_vms: int = 1_000_000  # tracking measured again with this many VMs in the database
    bus_messages: int = 200_000
    bus_senders: int = 200
    bus_resources: int = 1_000
    socket_round_trips: int = 20_000
    insert_rows: int = 5_000
    cold_runs: int = 15
    ring_lookups: int = 200_000  # cluster: HashRing.owner() calls per ring size
    cluster_round_trips: int = 2_000  # cluster: AmqpBus and raw pika round trips each
    cluster_vms: int = 300  # cluster: VM creates per node count (1, 2, 3 nodes)
    cluster_clients: int = 20
    tui_vms: int = 100_000  # the dashboard benchmark's VMs
    tui_repeats: int = 30  # at least 20, so that p95 is not simply the slowest sample
    kvm_vms: int = 5  # kvm: creates on one namespaced KVM host (full run only, needs root)
    boot_vms: int = 3  # boot: guest-image VMs booted to an SSH login (full run only, root)
    migrations: int = 4  # migrate: live migrations of one guest (full run only, root)
    batch_streams: int = 8  # batch: parallel `zcli -f -` streams (and AsyncClient connections)
    batch_vms: int = 500  # batch: creates per stream, in 4 runs (150 was noisy)
    batch_parallel: int = 8  # batch: --parallel N (and AsyncClient requests in flight each)
    growth_top: int = 1_000_000  # growth: VMs loaded at the top level (levels 0, top/10, top)
    growth_hosts: int = 100_000  # growth: simulator hosts loaded at every level
    growth_creates: int = 6_000  # growth: creates per level (2,000 left the figures noisy)
    growth_clients: int = 50  # growth: connections the creates come from
    growth_fixed: int = 50  # growth: VMs of the small zone the join count counts
    growth_repeats: int = 300  # growth: calls per timed query / allocation
    stress_vms: int = 30_000  # stress: concurrent CreateVmInstance requests, all sent at once
    stress_hosts: int = 100_000  # stress: simulated hosts (bulk-loaded)
    stress_procs: int = 10  # stress: client processes
    stress_conns: int = 4  # stress: AsyncClient connections per process

    @classmethod
    def ci(cls) -> Sizes:
        return cls(
            vms=40,
            vm_clients=10,
            vm_seconds=20.0,
            single_creates=5,
            lean_vms=200,
            query_hosts=200,
            query_vms=1_000,
            query_repeats=30,
            jobs=200,
            jobs_seconds=30.0,
            track_hosts=200,
            track_interval=2.0,
            track_vms=1_000,
            bus_messages=5_000,
            bus_senders=50,
            bus_resources=50,
            socket_round_trips=2_000,
            insert_rows=2_000,
            cold_runs=3,
            ring_lookups=10_000,
            cluster_round_trips=200,
            cluster_vms=30,
            cluster_clients=6,
            tui_vms=1_000,
            tui_repeats=3,
            batch_vms=5,
            growth_top=1_000,
            growth_hosts=200,
            growth_creates=30,
            growth_clients=5,
            growth_fixed=3,
            growth_repeats=10,
            stress_vms=300,
            stress_hosts=200,
            stress_procs=2,
            stress_conns=2,
        )


@dataclass
class Run:
    """What one ``python -m bench`` run has: sizes, a work directory, results so far."""

    sizes: Sizes
    workdir: Path
    ci: bool = False
    results: list[Result] = field(default_factory=list)
    baselines: dict[str, Result] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)  # e.g. empty_boot_cpu
    facts_text: dict[str, str] = field(default_factory=dict)  # e.g. psi_before
    timings: dict[str, float] = field(default_factory=dict)  # family -> wall seconds
    started: float = field(default_factory=time.monotonic)

    def baseline(self, result: Result) -> Result:
        self.baselines[result.name] = result
        print(f"  baseline {result.line()}", flush=True)
        return result

    def add(self, result: Result) -> Result:
        self.results.append(result)
        print(f"  {result.line()}", flush=True)
        return result

    def skip(self, family: str, name: str, reason: str) -> None:
        self.skipped.append(Skipped(family, name, reason))
        print(f"  skipped {family}/{name}: {reason}", flush=True)

    def note(self, family: str, text: str) -> None:
        self.notes.setdefault(family, []).append(text)
        print(f"  note [{family}] {text}", flush=True)


async def timed(fn: Callable[[], Awaitable[Any]], samples: Samples) -> Any:
    """Await ``fn()``, recording its latency or its failure in ``samples``."""
    t0 = time.perf_counter()
    try:
        value = await fn()
    except Exception as exc:
        samples.fail(f"{type(exc).__name__}: {exc}")
        return None
    samples.add(time.perf_counter() - t0)
    return value


async def run_concurrently(
    count: int, workers: int, one: Callable[[int], Awaitable[None]]
) -> float:
    """Run ``one(i)`` for i in range(count) on ``workers`` concurrent workers; wall seconds."""
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(workers, count)))))
    return time.perf_counter() - t0
