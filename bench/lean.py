"""The lean reference of the VM create path, written directly with SQLAlchemy Core.

What creating a simulated VM cannot avoid: allocate a host (a conditional capacity update),
insert the VM, its root volume and its NIC, one unix-socket round trip to an agent (the echo
server in its own process), then a state update. Same SQLite settings as the node (WAL,
``synchronous=NORMAL``) and the same rule as the node: no await inside a transaction.
Per-VM time one at a time is the single-create baseline; VMs/s with many in flight is the
throughput baseline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from bench.harness import Samples
from zmn.client import AsyncClient

GiB = 1024**3
meta = MetaData()
host_t = Table(
    "host",
    meta,
    Column("uuid", String(32), primary_key=True),
    Column("name", String(255), index=True),
    Column("clusterUuid", String(32), index=True),
    Column("status", String(32)),
    Column("availableCpuCapacity", BigInteger),
    Column("availableMemoryCapacity", BigInteger),
    Column("lastOpDate", DateTime),
)
vm_t = Table(
    "vm_instance",
    meta,
    Column("uuid", String(32), primary_key=True),
    Column("name", String(255), index=True),
    Column("zoneUuid", String(32), index=True),
    Column("hostUuid", String(32), index=True),
    Column("state", String(32), index=True),
    Column("cpuNum", Integer),
    Column("memorySize", BigInteger),
    Column("createDate", DateTime),
    Column("lastOpDate", DateTime),
)
volume_t = Table(
    "volume",
    meta,
    Column("uuid", String(32), primary_key=True),
    Column("vmInstanceUuid", String(32), index=True),
    Column("primaryStorageUuid", String(32), index=True),
    Column("size", BigInteger),
    Column("status", String(32)),
    Column("createDate", DateTime),
)
nic_t = Table(
    "vm_nic",
    meta,
    Column("uuid", String(32), primary_key=True),
    Column("vmInstanceUuid", String(32), index=True),
    Column("l3NetworkUuid", String(32), index=True),
    Column("ip", String(64)),
    Column("mac", String(17), unique=True),
    Column("createDate", DateTime),
)


def sqlite_engine(path: Path) -> Engine:
    """SQLite with the node's pragmas (WAL, synchronous=NORMAL, foreign keys, busy timeout)."""
    engine = create_engine(
        f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class LeanCreate:
    """Creates lean VMs in ``db`` talking to the fake agent at ``agent`` (an echo server)."""

    def __init__(self, db: Path, agent: str, hosts: int = 8) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        self.engine = sqlite_engine(db)
        meta.create_all(self.engine)
        self.agent = agent
        self.counter = 0
        with self.engine.begin() as c:
            c.execute(
                insert(host_t),
                [
                    {
                        "uuid": os.urandom(16).hex(),
                        "name": f"lean-h{i}",
                        "clusterUuid": "c" * 32,
                        "status": "Connected",
                        "availableCpuCapacity": 10**9,
                        "availableMemoryCapacity": 10**9 * GiB,
                        "lastOpDate": _now(),
                    }
                    for i in range(hosts)
                ],
            )

    def _allocate_and_insert(self, vm: str) -> str:
        with self.engine.begin() as c:
            host = c.execute(
                select(host_t.c.uuid)
                .where(host_t.c.status == "Connected", host_t.c.availableCpuCapacity >= 1)
                .order_by(host_t.c.availableCpuCapacity.desc())
                .limit(1)
            ).scalar_one()
            taken = c.execute(
                update(host_t)
                .where(host_t.c.uuid == host, host_t.c.availableCpuCapacity >= 1)
                .values(
                    availableCpuCapacity=host_t.c.availableCpuCapacity - 1,
                    availableMemoryCapacity=host_t.c.availableMemoryCapacity - GiB,
                    lastOpDate=_now(),
                )
            ).rowcount
            assert taken == 1
            now = _now()
            self.counter += 1
            n = self.counter
            c.execute(
                insert(vm_t).values(
                    uuid=vm,
                    name=f"lean-{n}",
                    zoneUuid="z" * 32,
                    hostUuid=host,
                    state="Starting",
                    cpuNum=1,
                    memorySize=GiB,
                    createDate=now,
                    lastOpDate=now,
                )
            )
            c.execute(
                insert(volume_t).values(
                    uuid=os.urandom(16).hex(),
                    vmInstanceUuid=vm,
                    primaryStorageUuid="p" * 32,
                    size=10 * GiB,
                    status="Ready",
                    createDate=now,
                )
            )
            c.execute(
                insert(nic_t).values(
                    uuid=os.urandom(16).hex(),
                    vmInstanceUuid=vm,
                    l3NetworkUuid="l" * 32,
                    ip=f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}",
                    mac="fa:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}".format(*n.to_bytes(5, "big")),
                    createDate=now,
                )
            )
        return host

    def _running(self, vm: str) -> None:
        with self.engine.begin() as c:
            c.execute(
                update(vm_t).where(vm_t.c.uuid == vm).values(state="Running", lastOpDate=_now())
            )

    async def create(self, agent: AsyncClient) -> None:
        vm = os.urandom(16).hex()
        host = self._allocate_and_insert(vm)
        await agent.call(
            "startVm", {"vmUuid": vm, "hostUuid": host, "cpuNum": 1, "memorySize": GiB}
        )
        self._running(vm)

    async def run(self, count: int, in_flight: int, connections: int = 1) -> tuple[float, Samples]:
        """Create ``count`` VMs with ``in_flight`` at a time; (wall seconds, per-VM samples)."""
        clients = [await AsyncClient(self.agent).connect() for _ in range(max(1, connections))]
        samples = Samples()
        todo = iter(range(count))

        async def worker(k: int) -> None:
            client = clients[k % len(clients)]
            for _ in todo:
                t0 = time.perf_counter()
                try:
                    await self.create(client)
                except Exception as exc:
                    samples.fail(f"{type(exc).__name__}: {exc}")
                    continue
                samples.add(time.perf_counter() - t0)

        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(worker(k) for k in range(max(1, min(in_flight, count)))))
        finally:
            for client in clients:
                await client.close()
        return time.perf_counter() - t0, samples

    def close(self) -> None:
        self.engine.dispose()
