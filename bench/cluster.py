"""Scale-out: ring lookups, the RabbitMQ bus against raw pika, VM creates on 1, 2 and 3 nodes.

* ``ring_lookup_<N>x<V>``: microseconds per ``HashRing.owner()`` for N nodes with V virtual
  nodes each (a bisection over N*V points plus one BLAKE2b hash of the key).
* ``amqp_request_reply``: calls per second through :class:`zmn.core.amqp_bus.AmqpBus` (two buses
  in this process, publisher confirms, manual acks, the dedup cache), one at a time, against the
  baseline ``pika_round_trip`` measured just before in the same run: raw pika
  ``BlockingConnection`` client and server (a thread), no confirms. Goal: at least 0.5x.
* ``vm_create_<N>_nodes``: VM creates per second with N management node processes on one
  MariaDB database and one RabbitMQ virtual host, clients spread over the nodes' sockets.
  Nodes are added one by one to the same cloud; the baseline is the one-node figure. This
  machine has 2 cores, so more nodes add no CPU: the figure shows what the cluster costs.

The family needs RabbitMQ (``rabbitmqctl`` makes a virtual host per run, deleted after) and,
for the VM part, MariaDB; without them those benchmarks are reported as skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
import uuid
from typing import Any

from bench.cloud import build_cloud
from bench.harness import Result, Run, Samples
from bench.node import NodeProcess
from tests.support.services import port_open
from zmn.client import AsyncClient

FAMILY = "cluster"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/"
BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def rabbitmqctl(*args: str) -> None:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")


class VHost:
    """A RabbitMQ virtual host for one run (queues of every node and client go with it)."""

    def __init__(self) -> None:
        self.name = "zmn-bench-" + uuid.uuid4().hex[:8]

    @property
    def url(self) -> str:
        return BROKER + self.name

    def __enter__(self) -> VHost:
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc: object) -> None:
        rabbitmqctl("delete_vhost", self.name)


# --------------------------------------------------------------------------- ring


def ring_lookups(run: Run) -> None:
    from zmn.core.ring import HashRing

    count = run.sizes.ring_lookups
    keys = [uuid.uuid4().hex for _ in range(count)]
    for nodes, vnodes in ((1, 200), (3, 200), (10, 200), (100, 200)):
        ring = HashRing([uuid.uuid4().hex for _ in range(nodes)], vnodes=vnodes)
        owner = ring.owner
        t0 = time.perf_counter()
        for key in keys:
            owner(key)
        per = (time.perf_counter() - t0) / count * 1e6
        run.add(
            Result(
                FAMILY,
                f"ring_lookup_{nodes}x{vnodes}",
                per,
                "us",
                size=f"{count:,} lookups, {nodes} node(s) x {vnodes} vnodes",
                goal="< 10 us",
                met=per < 10,
            )
        )


# --------------------------------------------------------------------------- bus vs raw pika


def raw_pika(url: str, count: int) -> Samples:
    """Request/reply with plain pika: a server thread echoes, the client waits for each reply."""
    import pika

    queue = "bench.raw." + uuid.uuid4().hex[:8]
    ready = threading.Event()
    stop = threading.Event()

    def server() -> None:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        ch.queue_declare(queue, auto_delete=True)

        def on_request(ch: Any, method: Any, props: Any, body: bytes) -> None:
            ch.basic_publish(
                "",
                props.reply_to,
                body,
                pika.BasicProperties(correlation_id=props.correlation_id),
            )
            ch.basic_ack(method.delivery_tag)

        ch.basic_consume(queue, on_request)
        ready.set()
        while not stop.is_set():
            conn.process_data_events(time_limit=0.1)
        conn.close()

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    ready.wait(30)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    reply_queue = ch.queue_declare("", exclusive=True).method.queue
    replies: dict[str, bytes] = {}

    def on_reply(ch: Any, method: Any, props: Any, body: bytes) -> None:
        replies[props.correlation_id] = body

    ch.basic_consume(reply_queue, on_reply, auto_ack=True)
    samples = Samples()
    try:
        for i in range(count):
            cid = str(i)
            t0 = time.perf_counter()
            ch.basic_publish(
                "",
                queue,
                b'{"x": 1}',
                pika.BasicProperties(reply_to=reply_queue, correlation_id=cid),
            )
            while cid not in replies:
                conn.process_data_events(time_limit=1)
            replies.pop(cid)
            samples.add(time.perf_counter() - t0)
    finally:
        conn.close()
        stop.set()
        thread.join(10)
    return samples


async def bus_round_trips(url: str, count: int) -> Samples:
    from zmn.core.amqp_bus import AmqpBus
    from zmn.core.bus import Envelope, Principal

    a_uuid, b_uuid = uuid.uuid4().hex, uuid.uuid4().hex
    a = AmqpBus(url, a_uuid, lambda _n, x: x)
    b = AmqpBus(url, b_uuid, lambda _n, x: x)

    async def echo(env: Envelope) -> Any:
        return env.message

    b.serve("echo", echo)
    await asyncio.gather(a.start(), b.start())
    admin = Principal("0" * 32, "admin", "SystemAdmin")
    samples = Samples()
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                await a.call("echo", Envelope("Echo", {"x": 1}, admin), node=b_uuid, timeout=10)
            except Exception as exc:
                samples.fail(f"{type(exc).__name__}: {exc}")
                continue
            samples.add(time.perf_counter() - t0)
    finally:
        await asyncio.gather(a.stop(), b.stop(), return_exceptions=True)
    return samples


async def bus_ratio(run: Run, url: str) -> None:
    n = run.sizes.cluster_round_trips
    await asyncio.to_thread(raw_pika, url, max(20, n // 10))  # warm up the broker and pika
    # interleaved halves, so a burst of load elsewhere hits both sides alike
    raw, bus = Samples(), Samples()
    for _ in range(2):
        part = await asyncio.to_thread(raw_pika, url, n // 2)
        raw.latencies += part.latencies
        raw.tried += part.tried
        mine = await bus_round_trips(url, n // 2)
        bus.latencies += mine.latencies
        bus.tried += mine.tried
        bus.errors += mine.errors
    raw_rate = len(raw.latencies) / sum(raw.latencies) if raw.latencies else 0.0
    base = run.baseline(
        Result(
            "baseline",
            "pika_round_trip",
            raw_rate,
            "round trips/s",
            raw,
            note="raw pika BlockingConnection client and server thread, no confirms",
        )
    )
    rate = len(bus.latencies) / sum(bus.latencies) if bus.latencies else 0.0
    run.add(
        Result(
            FAMILY,
            "amqp_request_reply",
            rate,
            "calls/s",
            bus,
            size=f"{bus.tried:,} calls one at a time",
            note="AmqpBus: confirms, manual acks, dedup cache; both ends in this process",
        ).compare(base, goal=">= 0.5x raw pika", check=lambda _v, r: (r or 0) >= 0.5)
    )


# --------------------------------------------------------------------------- VM creates


async def creates(
    nodes: list[NodeProcess], cloud: Any, count: int, clients: int, tag: str
) -> tuple[float, Samples]:
    conns = [await AsyncClient(nodes[i % len(nodes)].endpoint).connect() for i in range(clients)]
    samples = Samples()
    todo = iter(range(count))

    async def loop(client: AsyncClient) -> None:
        for i in todo:
            t0 = time.perf_counter()
            try:
                await client.call("CreateVmInstance", cloud.vm_args(f"{tag}-{i}"))
            except Exception as exc:
                samples.fail(f"{type(exc).__name__}: {exc}")
                continue
            samples.add(time.perf_counter() - t0)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(loop(c) for c in conns))
    finally:
        wall = time.perf_counter() - t0
        for c in conns:
            await c.close()
    return wall, samples


async def vm_throughput(run: Run, bus_url: str) -> None:
    from sqlalchemy import create_engine, text

    sz = run.sizes
    name = "zmn_bench_" + uuid.uuid4().hex[:8]
    admin = create_engine(MARIADB, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    nodes: list[NodeProcess] = []
    try:
        conf = {"db.url": MARIADB + name, "bus.url": bus_url, "log.level": "WARNING"}
        conf["shutdown.grace"] = "5"
        for i in range(3):
            node = NodeProcess(
                run.workdir / f"cluster-n{i + 1}" / "home", {**conf, "node.name": f"n{i + 1}"}
            )
            node.init()
            nodes.append(node)
        one: Result | None = None
        cloud = None
        for k in (1, 2, 3):
            nodes[k - 1].start()
            if cloud is None:
                async with AsyncClient(nodes[0].endpoint) as client:
                    cloud = await build_cloud(client, hosts=6, vms=4 * sz.cluster_vms + 100)
            await asyncio.sleep(3)  # every node sees the new one (heartbeat interval 2 s)
            wall, samples = await creates(
                nodes[:k], cloud, sz.cluster_vms, sz.cluster_clients, f"n{k}"
            )
            rate = samples.ok / wall if wall else 0.0
            result = Result(
                FAMILY,
                f"vm_create_{k}_node{'s' if k > 1 else ''}",
                rate,
                "VMs/s",
                samples,
                size=f"{sz.cluster_vms:,} VMs, {sz.cluster_clients} clients over {k} node socket(s)",
                note="MariaDB + RabbitMQ, simulator hosts",
            )
            if one is None:
                one = run.baseline(
                    Result("baseline", "cluster_one_node", rate, "VMs/s", note="vm_create_1_node")
                )
            else:
                result.compare(one, goal=">= 0.5x one node", check=lambda _v, r: (r or 0) >= 0.5)
            run.add(result)
    finally:
        for node in nodes:
            node.stop()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


async def measure(run: Run) -> None:
    print("cluster", flush=True)
    ring_lookups(run)
    if not port_open(5672) or shutil.which("rabbitmqctl") is None:
        run.skip(FAMILY, "amqp_request_reply", "RabbitMQ (and rabbitmqctl) not available")
        run.skip(FAMILY, "vm_create_N_nodes", "RabbitMQ (and rabbitmqctl) not available")
        return
    with VHost() as vhost:
        await bus_ratio(run, vhost.url)
        if not port_open(3306):
            run.skip(FAMILY, "vm_create_N_nodes", "MariaDB not running on 127.0.0.1:3306")
            return
        await vm_throughput(run, vhost.url)
