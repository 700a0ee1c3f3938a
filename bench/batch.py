"""Batch creates through ``zcli -f -`` against the ``AsyncClient`` figure of the same run.

Three ways to create VMs on one node, each with ``batch_streams`` connections: the
``AsyncClient`` reference (each connection keeps ``batch_parallel`` requests in flight,
measured before and after the zcli runs, their mean), and as many ``zcli -q -f -`` processes
fed the same kind of lines on stdin, one line at a time (the default), then with
``--parallel batch_parallel``. The zcli figures count the whole
process (start-up, catalogue, output) in their wall time; the goal is that the parallel
streams keep up: at least 0.8x the ``AsyncClient`` figure.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.cli import cached_env
from bench.cloud import Cloud, build_cloud
from bench.harness import Result, Run, Samples
from bench.node import NodeProcess, tool
from zmn.client import AsyncClient

FAMILY = "batch"


def line(cloud: Cloud, name: str) -> str:
    args = cloud.vm_args(name)
    return (
        f"-q api CreateVmInstance name={args['name']} imageUuid={args['imageUuid']}"
        f" instanceOfferingUuid={args['instanceOfferingUuid']}"
        f" l3NetworkUuids={args['l3NetworkUuids'][0]}\n"
    )


async def asyncclient_streams(
    node: NodeProcess, cloud: Cloud, streams: int, per: int, parallel: int, tag: str
) -> tuple[float, Samples]:
    """``streams`` connections, ``parallel`` creates in flight on each: (wall s, samples)."""
    samples = Samples()
    clients = [await AsyncClient(node.endpoint).connect() for _ in range(streams)]

    async def one(client: AsyncClient, names: list[str]) -> None:
        for name in names:
            t0 = time.perf_counter()
            try:
                await client.call("CreateVmInstance", cloud.vm_args(name))
            except Exception as exc:
                samples.fail(f"{type(exc).__name__}: {exc}")
                continue
            samples.add(time.perf_counter() - t0)

    work = []
    for s, client in enumerate(clients):
        names = [f"{tag}-{s}-{i}" for i in range(per)]
        work += [one(client, names[k::parallel]) for k in range(parallel)]
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*work)
    finally:
        wall = time.perf_counter() - t0
        for c in clients:
            await c.close()
    return wall, samples


async def zcli_streams(
    run: Run, node: NodeProcess, cloud: Cloud, tag: str, per: int, extra: list[str]
) -> tuple[float, Samples]:
    """``batch_streams`` ``zcli -q -f -`` processes of ``per`` creates each; a sample is a
    stream's wall time, a failure a line that printed no UUID."""
    samples = Samples()
    env = cached_env(run, node)

    async def stream(s: int) -> None:
        script = "".join(line(cloud, f"{tag}-{s}-{i}") for i in range(per)).encode()
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            tool("zcli"),
            "-f",
            "-",
            *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await proc.communicate(script)
        seconds = time.perf_counter() - t0
        made = len(out.split())
        for _ in range(made):
            samples.latencies.append(seconds)
            samples.tried += 1
        for _ in range(per - made):
            samples.fail(f"zcli exit {proc.returncode}: {err.decode().strip()[-300:]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(stream(s) for s in range(run.sizes.batch_streams)))
    return time.perf_counter() - t0, samples


async def measure(run: Run, node: NodeProcess) -> None:
    print("batch", flush=True)
    sz = run.sizes
    streams, per, parallel = sz.batch_streams, sz.batch_vms, sz.batch_parallel
    async with AsyncClient(node.endpoint) as admin:
        cloud = await build_cloud(admin, hosts=8, vms=4 * streams * per + 100)
        await admin.call("CreateVmInstance", cloud.vm_args("warm-up"))
    # the catalogue cache and bytecode of the zcli processes: warm, as on a used machine
    env = cached_env(run, node)
    done = await asyncio.create_subprocess_exec(
        tool("zcli"), "-q", "zone", "list", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    await done.wait()
    size = f"{streams} streams x {per:,} creates"
    before = await asyncclient_streams(node, cloud, streams, per, parallel, "ac0")
    figures = [
        await zcli_streams(run, node, cloud, tag, per, extra)
        for tag, extra in (("serial", []), ("parallel", ["--parallel", str(parallel)]))
    ]
    after = await asyncclient_streams(node, cloud, streams, per, parallel, "ac1")
    rates = [b.ok / w if w else 0.0 for w, b in (before, after)]
    samples = before[1]
    samples.latencies += after[1].latencies
    samples.errors += after[1].errors
    samples.tried += after[1].tried
    reference = run.baseline(
        Result(
            "baseline",
            "asyncclient_batch_create",
            sum(rates) / 2,
            "VMs/s",
            samples,
            size=f"{size}, {parallel} in flight on each connection",
            note=(
                f"AsyncClient, one connection a stream: the mean of {rates[0]:.1f} VMs/s before"
                f" the zcli runs and {rates[1]:.1f} after them (the database grows, load drifts)"
            ),
        )
    )
    modes: list[tuple[str, str, Any]] = [
        ("zcli_batch_serial", "one line at a time (the default)", None),
        ("zcli_batch_parallel", f"--parallel {parallel}", lambda _v, r: (r or 0) >= 0.8),
    ]
    for (name, how, check), (wall, samples) in zip(modes, figures, strict=True):
        rate = samples.ok / wall if wall else 0.0
        result = Result(
            FAMILY,
            name,
            rate,
            "VMs/s",
            samples,
            size=size,
            note=(
                f"{streams} `zcli -q -f -` processes, {how}; {samples.ok:,} VMs in {wall:.1f} s,"
                " process start-up included"
            ),
        )
        run.add(
            result.compare(reference, goal=">= 0.8x AsyncClient", check=check)
            if check
            else result.compare(reference)
        )
