"""Baselines, measured first in every run on the same machine: what the benchmarks divide by.

* ``insert_single`` / ``insert_bulk``: SQLAlchemy Core inserts on SQLite WAL (node pragmas),
  one row per transaction and ``executemany`` in one transaction;
* ``socket_rtt`` / ``socket_rtt_concurrent``: framed-JSON round trips to the echo server in
  its own process, one at a time and many in flight (same client code as the API benchmarks);
* ``lean_create`` / ``lean_create_concurrent``: the lean VM create reference (:mod:`bench.lean`);
* ``python_pass``: a cold ``python -I -c pass``.

The raw SQL of each query benchmark is measured next to it, in :mod:`bench.query`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert

from bench.echo import EchoProcess
from bench.harness import Result, Run, Samples
from bench.lean import LeanCreate, sqlite_engine
from zmn.client import AsyncClient

FAMILY = "baseline"


def cold_process(argv: list[str], runs: int, env: dict[str, str] | None = None) -> Samples:
    """Wall time of ``runs`` fresh processes (after one unmeasured warm-up of the page cache)."""
    samples = Samples()
    subprocess.run(argv, capture_output=True, env=env, check=False)
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, check=False)
        elapsed = time.perf_counter() - t0
        if done.returncode == 0:
            samples.add(elapsed)
        else:
            samples.fail(f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}")
    return samples


def python_pass(run: Run) -> Result:
    s = cold_process([sys.executable, "-I", "-c", "pass"], run.sizes.cold_runs * 2)
    return run.baseline(
        Result(
            FAMILY, "python_pass", s.p(50) * 1e3, "ms", s, note="p50 of a cold `python -I -c pass`"
        )
    )


def inserts(run: Run) -> tuple[Result, Result]:
    meta = MetaData()
    table = Table(
        "resource",
        meta,
        Column("uuid", String(32), primary_key=True),
        Column("name", String(255), index=True),
        Column("state", String(32), index=True),
        Column("size", Integer),
        Column("createDate", DateTime),
    )
    path = run.workdir / "baseline-inserts.db"
    engine = sqlite_engine(path)
    meta.create_all(engine)
    import datetime as dt

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    n = run.sizes.insert_rows
    single = Samples()
    t0 = time.perf_counter()
    for i in range(n):
        t1 = time.perf_counter()
        with engine.begin() as c:
            c.execute(
                insert(table).values(
                    uuid=os.urandom(16).hex(), name=f"r{i}", state="Enabled", size=i, createDate=now
                )
            )
        single.add(time.perf_counter() - t1)
    wall = time.perf_counter() - t0
    one = run.baseline(
        Result(
            FAMILY,
            "insert_single",
            n / wall,
            "rows/s",
            single,
            note="one row per transaction, Core",
        )
    )
    rows = [
        {
            "uuid": os.urandom(16).hex(),
            "name": f"b{i}",
            "state": "Enabled",
            "size": i,
            "createDate": now,
        }
        for i in range(n * 5)
    ]
    t0 = time.perf_counter()
    with engine.begin() as c:
        c.execute(insert(table), rows)
    wall = time.perf_counter() - t0
    bulk = run.baseline(
        Result(
            FAMILY,
            "insert_bulk",
            len(rows) / wall,
            "rows/s",
            note="executemany in one transaction, Core",
        )
    )
    engine.dispose()
    return one, bulk


async def round_trips(
    endpoint: str, count: int, in_flight: int, api: str = "Echo"
) -> tuple[float, Samples]:
    """``count`` round trips to ``endpoint``, ``in_flight`` at a time over up to 10 connections."""
    connections = max(1, min(10, in_flight))
    clients = [await AsyncClient(endpoint).connect() for _ in range(connections)]
    samples = Samples()
    todo = iter(range(count))

    async def worker(k: int) -> None:
        client = clients[k % connections]
        for i in todo:
            t0 = time.perf_counter()
            try:
                await client.call(api, {"i": i} if api == "Echo" else {})
            except Exception as exc:
                samples.fail(f"{type(exc).__name__}: {exc}")
                continue
            samples.add(time.perf_counter() - t0)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(k) for k in range(max(1, in_flight))))
    finally:
        for client in clients:
            await client.close()
    return time.perf_counter() - t0, samples


async def socket(run: Run) -> tuple[Result, Result]:
    n = run.sizes.socket_round_trips
    with EchoProcess(run.workdir / "echo.sock") as echo:
        wall, serial = await round_trips(echo.endpoint, n // 4, 1)
        one = run.baseline(
            Result(
                FAMILY,
                "socket_rtt",
                serial.p(50) * 1e3,
                "ms",
                serial,
                note=f"{len(serial.latencies) / wall:,.0f}/s one at a time",
            )
        )
        wall, many = await round_trips(echo.endpoint, n, 100)
        conc = run.baseline(
            Result(
                FAMILY,
                "socket_rtt_concurrent",
                many.ok / wall,
                "round trips/s",
                many,
                note="100 in flight on 10 connections",
            )
        )
    return one, conc


async def lean(run: Run) -> tuple[Result, Result]:
    n = run.sizes.lean_vms
    with EchoProcess(run.workdir / "agent.sock") as agent:
        ref = LeanCreate(run.workdir / "lean.db", agent.endpoint)
        try:
            wall, serial = await ref.run(n, 1)
            one = run.baseline(
                Result(
                    FAMILY,
                    "lean_create",
                    serial.p(50) * 1e3,
                    "ms/VM",
                    serial,
                    note=f"{serial.ok / wall:,.0f} VMs/s one at a time",
                    extra={"vms_per_second": serial.ok / wall},
                )
            )
            clients = run.sizes.vm_clients
            wall, many = await ref.run(n, clients, connections=min(10, clients))
            conc = run.baseline(
                Result(
                    FAMILY,
                    "lean_create_concurrent",
                    many.ok / wall,
                    "VMs/s",
                    many,
                    note=f"{clients} in flight",
                )
            )
        finally:
            ref.close()
    return one, conc


async def measure(run: Run) -> None:
    print("baselines", flush=True)
    python_pass(run)
    inserts(run)
    await socket(run)
    await lean(run)
