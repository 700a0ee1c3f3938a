"""Profile of the hottest path (``CreateVmInstance``) with pyinstrument, for docs/benchmarks.md.

The node runs in this process (:mod:`bench.inproc`, same services, SQLite file, socket) so its
frames can be sampled; creates go through the socket with a few in flight. The report keeps
the time by layer (SQLAlchemy, node code, asyncio, ...), the node functions with the most
cumulative time, a trimmed call tree, and the hot spots named with their share, so the fixes
can be assigned. Nothing here changes the product.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import event

from bench.cloud import build_cloud
from bench.harness import Run
from bench.inproc import endpoint_of, inproc_node
from zmn.client import AsyncClient

FAMILY = "profile"

# (label, function name, file suffix): functions whose cumulative share the report names
WATCH = [
    (
        "flow record writes queued (one per step, waits for durability)",
        "FlowChain._save",
        "core/flow.py",
    ),
    (
        "flow record group commit (many chains per transaction)",
        "RecordWriter.flush",
        "core/flow.py",
    ),
    ("job progress (in memory, published)", "JobHandle.progress", "core/jobs.py"),
    ("job submit (JobVO insert)", "JobManager.submit", "core/jobs.py"),
    ("inventories rebuilt (VM + children)", "ResourceType.inventories", "core/resource.py"),
    ("internal messages over the bus", "Call.call", "core/service.py"),
    ("host allocation", "HostService.allocate_host", "host/vmops.py"),
    ("IP allocation", "NetworkService.allocate_ip", "network/ipam.py"),
    (
        "primary storage allocation",
        "PrimaryStorageService.allocate_primary_storage",
        "primary_storage/capacity.py",
    ),
    ("volume rows", "VolumeService.create_vm_volume", "volume/store.py"),
    ("security-group hooks", "SecurityGroupVmHooks.after_vm_instantiate", "securitygroup/hooks.py"),
    ("API decode + name resolution", "resolve_message_refs", "core/crud.py"),
]


def _layer(path: str) -> str:
    if "sqlalchemy" in path:
        return "SQLAlchemy (ORM + Core)"
    if "/zmn/" in path or path.startswith("zmn/"):
        return "node code (zmn/)"
    if "asyncio" in path or "selectors" in path:
        return "asyncio"
    if "msgspec" in path or "json" in path:
        return "JSON (msgspec/json)"
    if path.startswith("<built-in>") or not path:
        return "built-ins (incl. sqlite3 C calls)"
    return "other Python"


def _walk(
    frame: Any,
    seen: frozenset[str],
    totals: dict[str, float],
    layers: dict[str, float],
    parent_path: str = "",
) -> None:
    name = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
    key = f"{name}\t{frame.file_path_short or ''}"
    if key not in seen:  # count recursion once
        totals[key] = totals.get(key, 0.0) + frame.time
        seen = seen | {key}
    # self time sits in synthetic "[self]" children, which have no file: charge the caller's
    path = parent_path if frame.is_synthetic or not frame.file_path else frame.file_path
    own = max(0.0, frame.time - sum(child.time for child in frame.children))
    layer = _layer(path)
    layers[layer] = layers.get(layer, 0.0) + own
    for child in frame.children:
        _walk(child, seen, totals, layers, path)


async def measure(run: Run) -> None:
    print("profile", flush=True)
    try:
        from pyinstrument import Profiler
    except ImportError:
        run.skip(
            FAMILY, "vm_create_profile", "pyinstrument is not installed (pip install -e .[dev])"
        )
        return
    count, in_flight = (6, 2) if run.ci else (60, 10)
    async with inproc_node(run.workdir / "profile-home", conf={"log.level": "WARNING"}) as node:
        async with AsyncClient(endpoint_of(node)) as client:
            cloud = await build_cloud(client, hosts=4, vms=count + 10)
            for i in range(3):
                await client.call("CreateVmInstance", cloud.vm_args(f"warm-{i}"))
            profiler = Profiler(interval=0.001, async_mode="disabled")
            todo = iter(range(count))
            sql = SqlCount(node.db.engine)

            async def worker() -> None:
                for i in todo:
                    await client.call("CreateVmInstance", cloud.vm_args(f"p-{i}"))

            cpu0, t0 = time.process_time(), time.perf_counter()
            with sql:
                profiler.start()
                await asyncio.gather(*(worker() for _ in range(in_flight)))
                profiler.stop()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is None:
        run.skip(FAMILY, "vm_create_profile", "the profiler recorded nothing")
        return
    totals: dict[str, float] = {}
    layers: dict[str, float] = {}
    _walk(root, frozenset(), totals, layers)
    sampled = root.time or 1.0
    # scale shares by the node's CPU per VM measured without the profiler, when the run has it
    unprofiled = next(
        (
            r.extra["node_cpu_ms"]
            for r in run.results
            if r.name == "create_throughput" and "node_cpu_ms" in r.extra
        ),
        None,
    )
    run.profiles.append(
        _section(count, in_flight, cpu, wall, sampled, totals, layers, profiler, unprofiled, sql)
    )


class SqlCount:
    """Statements and commits on ``engine`` while the ``with`` block runs."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.statements = 0
        self.commits = 0

    def _statement(self, *_args: Any) -> None:
        self.statements += 1

    def _commit(self, *_args: Any) -> None:
        self.commits += 1

    def __enter__(self) -> SqlCount:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


def _share(totals: dict[str, float], function: str, suffix: str, sampled: float) -> float | None:
    hits = [
        t for key, t in totals.items() if key.split("\t")[0] == function and key.endswith(suffix)
    ]
    return max(hits) / sampled if hits else None


def _section(
    count: int,
    in_flight: int,
    cpu: float,
    wall: float,
    sampled: float,
    totals: dict[str, float],
    layers: dict[str, float],
    profiler: Any,
    unprofiled: float | None,
    sql: SqlCount,
) -> str:
    profiled = cpu / count * 1e3
    per_vm = unprofiled or profiled
    basis = (
        f"the node's {unprofiled:.1f} ms CPU per VM measured without the profiler (vm family)"
        if unprofiled
        else "the profiled CPU per VM"
    )
    out = [
        "## Profile: CreateVmInstance\n",
        f"pyinstrument 1 ms sampling, node in the benchmark process, {count} creates with"
        f" {in_flight} in flight through the socket: {profiled:.1f} ms CPU per VM under the"
        f" profiler ({wall:.1f} s wall, {cpu:.1f} s CPU, client included). Shares are of the"
        f" sampled time; ms per VM applies a share to {basis}.\n",
        f"SQL per create: {sql.statements / count:.1f} statements and {sql.commits / count:.1f}"
        f" commits ({in_flight} in flight; SQLAlchemy's cursor and commit events, an"
        " `executemany` counted once, the node's background work included).\n",
        "### Time by layer (self time)\n",
        "| layer | share |\n|---|---|",
    ]
    for layer, t in sorted(layers.items(), key=lambda kv: -kv[1]):
        out.append(f"| {layer} | {t / sampled * 100:.1f}% |")
    out += [
        "",
        "### Hot spots (cumulative share of the create path)\n",
        "| what | function | share | ms per VM |",
        "|---|---|---|---|",
    ]
    for label, function, suffix in WATCH:
        share = _share(totals, function, suffix, sampled)
        if share is None:
            out.append(f"| {label} | `{function}` | not sampled | - |")
        else:
            out.append(f"| {label} | `{function}` | {share * 100:.1f}% | {share * per_vm:.1f} |")
    out += [
        "",
        "### Node functions with the most cumulative time\n",
        "| function | file | share |",
        "|---|---|---|",
    ]
    ours = [(k, t) for k, t in totals.items() if "zmn/" in k.split("\t")[1]]
    for key, t in sorted(ours, key=lambda kv: -kv[1])[:20]:
        function, path = key.split("\t")
        out.append(f"| `{function}` | {path} | {t / sampled * 100:.1f}% |")
    tree = profiler.output_text(
        unicode=False, color=False, processor_options={"filter_threshold": 0.02}
    )
    lines = [line for line in tree.splitlines() if line.strip()][:90]
    out += [
        "",
        "<details><summary>call tree (frames above 2%)</summary>\n",
        "```",
        *lines,
        "```",
        "</details>\n",
    ]
    return "\n".join(out)
