"""The bulk-load fast path: a simulated data centre written straight into the node's database.

Creating 1,000,000 VMs through the API would take hours; the query and tracking benchmarks
need the rows, not the journey. This module writes the same rows the services write
(zones, clusters, simulator hosts, L2/L3 networks, IP ranges, primary storage, and VMs with
a root volume, a NIC and its UsedIp each) with SQLAlchemy Core ``executemany`` in large
transactions, using the services' own table definitions, so the node and its query compiler
see ordinary data:

* host capacity is charged for every placed VM (``CheckConsistency`` holds);
* every NIC holds a UsedIp inside its L3's range, MACs are unique;
* VMs are ``Running`` (80 %), ``Stopped`` (15 %) or ``Paused`` (5 %), spread evenly over
  hosts and zones; a Stopped VM keeps ``lastHostUuid`` only, like the services leave it;
* the rows have no owning account (admin sees them; they are not in a normal account's view).

Loading takes the database's write lock in 50,000-row transactions; run it against a node
that is idle (or not started). Usage from Python::

    stats = bulk_load(db_url, Layout(zones=10, hosts=100_000, vms=1_000_000))
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, create_engine, event

GiB = 1024**3
PiB = 1024**5
# a zone's primary storage: 100,000 loaded 10 GiB volumes (1M VMs in 10 zones) fill 0.95 PiB, and
# the growth family creates thousands more on top
ZONE_STORAGE = 4 * PiB
CHUNK = 50_000


@dataclass
class Layout:
    """How much to load and how to spread it."""

    zones: int = 10
    hosts: int = 1_000
    vms: int = 10_000
    host_cpu: int = 0  # vCPUs per host; 0: enough for the VMs placed on it
    prefix: str = "bulk"
    hypervisor: str = "Simulator"


@dataclass
class Loaded:
    """UUIDs and names the benchmarks query by, and what the load took."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the loading thread: what the load costs on an idle machine
    rows: int = 0
    zones: list[tuple[str, str]] = field(default_factory=list)  # (uuid, name)
    hosts: list[str] = field(default_factory=list)
    vm_sample: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _tables() -> dict[str, Table]:
    # the services' models register their tables on Base.metadata
    import zmn.services.cluster.models
    import zmn.services.host.models
    import zmn.services.network.models
    import zmn.services.primary_storage.models
    import zmn.services.vm.models
    import zmn.services.volume.models
    import zmn.services.zone.models  # noqa: F401
    from zmn.core.db import Base

    return dict(Base.metadata.tables)


def _ids(n: int) -> list[str]:
    return [os.urandom(16).hex() for _ in range(n)]


def _ip(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


class _Writer:
    """``executemany`` of plain tuples on the DBAPI cursor: SQLAlchemy's per-row parameter
    processing costs more than SQLite's insert, so values are prepared once (timestamps
    rendered by the dialect's own bind processor, so the ORM reads them back unchanged)."""

    def __init__(self, conn: Any, tables: dict[str, Table]) -> None:
        self.conn = conn
        self.tables = tables
        self.dialect = conn.dialect
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(self.dialect.paramstyle, "?")
        self.sql: dict[str, tuple[str, list[str]]] = {}
        prep = self.dialect.identifier_preparer
        for name, table in tables.items():
            cols = [c.name for c in table.columns]
            self.sql[name] = (
                f"INSERT INTO {prep.quote(name)} ({', '.join(prep.quote(c) for c in cols)})"
                f" VALUES ({', '.join(mark for _ in cols)})",
                cols,
            )

    def bind(self, table: str, column: str, value: Any) -> Any:
        kind = self.tables[table].c[column].type.dialect_impl(self.dialect)
        proc = kind.bind_processor(self.dialect)
        return proc(value) if proc else value

    def positions(self, table: str) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.sql[table][1])}

    def template(self, table: str, **values: Any) -> list[Any]:
        """A row of ``table`` in column order: the given values, None elsewhere."""
        return [values.get(c) for c in self.sql[table][1]]

    def insert_lists(self, table: str, rows: list[list[Any]]) -> int:
        if rows:
            cursor = self.conn.connection.cursor()  # the DBAPI cursor, inside our transaction
            try:
                cursor.executemany(self.sql[table][0], rows)
            finally:
                cursor.close()
        return len(rows)

    def insert(self, table: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        sql, cols = self.sql[table]
        self.conn.exec_driver_sql(sql, [tuple(r.get(c) for c in cols) for r in rows])
        return len(rows)


def state_of(i: int) -> str:
    """The state of the i-th loaded VM: 80 % Running, 15 % Stopped, 5 % Paused."""
    r = i % 20
    return "Running" if r < 16 else ("Stopped" if r < 19 else "Paused")


def _chunks(rows: Iterator[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


BIG_TABLES = ("host", "vm_instance", "volume", "vm_nic", "used_ip")


def _drop_indexes(engine: Any) -> list[str]:
    """Drop the secondary (non-unique) indexes of the big tables; returns their DDL.

    Building an index once over sorted keys is several times cheaper than keeping eight
    B-trees up to date row by row; unique constraints and primary keys stay in place, so
    the load still fails on a duplicate."""
    if engine.dialect.name != "sqlite":
        return []
    with engine.begin() as c:
        found = c.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({', '.join(repr(t) for t in BIG_TABLES)})"
        ).all()
        for name, _sql in found:
            c.exec_driver_sql(f'DROP INDEX "{name}"')
    return [sql for _name, sql in found]


def bulk_load(
    db_url: str,
    layout: Layout,
    *,
    sample: int = 2_000,
    analyze: bool = False,
    rebuild_indexes: bool = True,
) -> Loaded:
    """Write the layout into the database at ``db_url``; returns what was loaded.

    ``analyze`` runs SQLite's ``ANALYZE`` afterwards; off by default, because the node never
    runs it and the benchmarks must see the query plans an operator would get.
    ``rebuild_indexes`` drops the big tables' secondary indexes for the load and builds them
    again at the end (the same DDL).
    """
    tables = _tables()
    engine = create_engine(db_url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=OFF")  # a benchmark load: durability comes at the end
        cur.execute("PRAGMA cache_size=-262144")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    p = layout.prefix
    out = Loaded()
    t0, cpu0 = time.perf_counter(), time.thread_time()
    ddl = _drop_indexes(engine) if rebuild_indexes else []
    z = max(1, layout.zones)
    nh = layout.hosts
    zone_ids, cluster_ids, l2_ids, l3_ids, range_ids, ps_ids = (_ids(z) for _ in range(6))
    host_ids = _ids(nh)
    out.zones = [(zone_ids[i], f"{p}-z{i}") for i in range(z)]
    out.hosts = host_ids
    # a /8 per zone: 16M addresses, so a zone is never short of IPs
    nets = [ipaddress.IPv4Network(f"{10 + i}.0.0.0/8") for i in range(z)]
    masks = [str(n.netmask) for n in nets]
    gateways = [str(n.network_address + 1) for n in nets]
    vms_on_host = [0] * max(1, nh)
    placed_on_host = [0] * max(1, nh)
    for i in range(layout.vms):
        h = i % max(1, nh)
        vms_on_host[h] += 1
        if state_of(i) != "Stopped":
            placed_on_host[h] += 1
    host_cpu = layout.host_cpu or max(8, max(vms_on_host, default=0) * 2)
    vms_in_zone = [0] * z
    for h in range(nh):
        vms_in_zone[h % z] += vms_on_host[h]

    with engine.begin() as c:
        w = _Writer(c, tables)
        now = w.bind("zone", "createDate", dt.datetime.now(dt.UTC).replace(tzinfo=None))
        false = w.bind("l3_network", "system", False)
        base = {"description": None, "createDate": now, "lastOpDate": now}
        rows = w.insert(
            "zone",
            [
                {"uuid": zone_ids[i], "name": f"{p}-z{i}", "state": "Enabled", **base}
                for i in range(z)
            ],
        )
        rows += w.insert(
            "cluster",
            [
                {
                    "uuid": cluster_ids[i],
                    "name": f"{p}-c{i}",
                    "zoneUuid": zone_ids[i],
                    "hypervisorType": layout.hypervisor,
                    "state": "Enabled",
                    "type": "zstack",
                    **base,
                }
                for i in range(z)
            ],
        )
        rows += w.insert(
            "l2_network",
            [
                {
                    "uuid": l2_ids[i],
                    "name": f"{p}-l2-{i}",
                    "zoneUuid": zone_ids[i],
                    "physicalInterface": "eth0",
                    "type": "L2NoVlanNetwork",
                    **base,
                }
                for i in range(z)
            ],
        )
        rows += w.insert(
            "l2_network_cluster_ref",
            [
                {"l2NetworkUuid": l2_ids[i], "clusterUuid": cluster_ids[i], "createDate": now}
                for i in range(z)
            ],
        )
        rows += w.insert(
            "l3_network",
            [
                {
                    "uuid": l3_ids[i],
                    "name": f"{p}-l3-{i}",
                    "l2NetworkUuid": l2_ids[i],
                    "zoneUuid": zone_ids[i],
                    "type": "L3BasicNetwork",
                    "category": "Private",
                    "state": "Enabled",
                    "system": false,
                    "ipVersion": 4,
                    **base,
                }
                for i in range(z)
            ],
        )
        rows += w.insert(
            "ip_range",
            [
                {
                    "uuid": range_ids[i],
                    "name": f"{p}-r{i}",
                    "l3NetworkUuid": l3_ids[i],
                    "startIp": str(nets[i].network_address + 10),
                    "endIp": str(nets[i].broadcast_address - 1),
                    "netmask": masks[i],
                    "gateway": gateways[i],
                    "networkCidr": str(nets[i]),
                    "ipVersion": 4,
                    **base,
                }
                for i in range(z)
            ],
        )
        rows += w.insert(
            "primary_storage",
            [
                {
                    "uuid": ps_ids[i],
                    "name": f"{p}-ps{i}",
                    "zoneUuid": zone_ids[i],
                    "type": "SimulatorPrimaryStorage",
                    "url": f"/sim/{p}/ps{i}",
                    "state": "Enabled",
                    "status": "Connected",
                    "totalCapacity": ZONE_STORAGE,
                    "availableCapacity": ZONE_STORAGE - vms_in_zone[i] * 10 * GiB,
                    "totalPhysicalCapacity": ZONE_STORAGE,
                    "availablePhysicalCapacity": ZONE_STORAGE - vms_in_zone[i] * 10 * GiB,
                    **base,
                }
                for i in range(z)
            ],
        )
        rows += w.insert(
            "primary_storage_cluster_ref",
            [
                {"primaryStorageUuid": ps_ids[i], "clusterUuid": cluster_ids[i], "createDate": now}
                for i in range(z)
            ],
        )
        for lo in range(0, nh, CHUNK):
            rows += w.insert(
                "host",
                [
                    {
                        "uuid": host_ids[h],
                        "name": f"{p}-h{h}",
                        "zoneUuid": zone_ids[h % z],
                        "clusterUuid": cluster_ids[h % z],
                        "hypervisorType": layout.hypervisor,
                        "managementIp": f"{p}-h{h}.sim",
                        "state": "Enabled",
                        "status": "Connected",
                        "cpuNum": host_cpu,
                        "totalCpuCapacity": host_cpu,
                        "availableCpuCapacity": host_cpu - placed_on_host[h],
                        "totalMemoryCapacity": host_cpu * GiB,
                        "availableMemoryCapacity": (host_cpu - placed_on_host[h]) * GiB,
                        **base,
                    }
                    for h in range(lo, min(nh, lo + CHUNK))
                ],
            )

    # VMs in transactions of CHUNK: the VM, its root volume, its NIC and the NIC's UsedIp.
    # Rows are lists copied from a per-table template (column order), then the varying
    # values set by position: building a dict per row cost more than SQLite's insert.
    next_ip = [int(n.network_address) + 10 for n in nets]
    step = max(1, layout.vms // max(1, sample))
    with engine.connect() as c:
        w = _Writer(c, tables)
    vm_t = w.template(
        "vm_instance",
        type="UserVm",
        hypervisorType=layout.hypervisor,
        platform="Linux",
        cpuNum=1,
        cpuSpeed=0,
        memorySize=GiB,
        **base,
    )
    vol_t = w.template(
        "volume",
        type="Root",
        format="qcow2",
        size=10 * GiB,
        actualSize=0,
        deviceId=0,
        state="Enabled",
        status="Ready",
        isShareable=false,
        **base,
    )
    nic_t = w.template(
        "vm_nic",
        deviceId=0,
        hypervisorType=layout.hypervisor,
        createDate=now,
        lastOpDate=now,
    )
    ip_t = w.template("used_ip", ipVersion=4, usedFor="Vm", createDate=now, lastOpDate=now)
    VM = w.positions("vm_instance")
    VOL = w.positions("volume")
    NIC = w.positions("vm_nic")
    UIP = w.positions("used_ip")
    for lo in range(0, layout.vms, CHUNK):
        hi = min(layout.vms, lo + CHUNK)
        vm_rows, vol_rows, nic_rows, ip_rows = [], [], [], []
        for i in range(lo, hi):
            vm, vol, nic, used = _ids(4)
            h = i % nh if nh else -1
            zi = h % z if nh else i % z
            host = host_ids[h] if nh else None
            state = state_of(i)
            out.states[state] = out.states.get(state, 0) + 1
            if i % step == 0 and len(out.vm_sample) < sample:  # spread over the whole table
                out.vm_sample.append(vm)
            ip_long = next_ip[zi]
            next_ip[zi] += 1
            ip = _ip(ip_long)
            l3 = l3_ids[zi]
            r = vm_t.copy()
            r[VM["uuid"]] = vm
            r[VM["name"]] = f"{p}-vm{i}"
            r[VM["zoneUuid"]] = zone_ids[zi]
            r[VM["clusterUuid"]] = cluster_ids[zi]
            r[VM["hostUuid"]] = host if state != "Stopped" else None
            r[VM["lastHostUuid"]] = host
            r[VM["rootVolumeUuid"]] = vol
            r[VM["defaultL3NetworkUuid"]] = l3
            r[VM["state"]] = state
            vm_rows.append(r)
            r = vol_t.copy()
            r[VOL["uuid"]] = vol
            r[VOL["name"]] = f"ROOT-for-{p}-vm{i}"
            r[VOL["primaryStorageUuid"]] = ps_ids[zi]
            r[VOL["vmInstanceUuid"]] = vm
            r[VOL["installPath"]] = f"/sim/{p}/ps{zi}/{vol}.qcow2"
            vol_rows.append(r)
            r = nic_t.copy()
            r[NIC["uuid"]] = nic
            r[NIC["vmInstanceUuid"]] = vm
            r[NIC["l3NetworkUuid"]] = l3
            r[NIC["usedIpUuid"]] = used
            r[NIC["ip"]] = ip
            r[NIC["mac"]] = "fa:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}".format(*i.to_bytes(5, "big"))
            r[NIC["netmask"]] = masks[zi]
            r[NIC["gateway"]] = gateways[zi]
            r[NIC["internalName"]] = f"vnic{i}.0"
            nic_rows.append(r)
            r = ip_t.copy()
            r[UIP["uuid"]] = used
            r[UIP["l3NetworkUuid"]] = l3
            r[UIP["ipRangeUuid"]] = range_ids[zi]
            r[UIP["ip"]] = ip
            r[UIP["ipInLong"]] = ip_long
            r[UIP["netmask"]] = masks[zi]
            r[UIP["gateway"]] = gateways[zi]
            r[UIP["vmNicUuid"]] = nic
            ip_rows.append(r)
        with engine.begin() as c:
            w = _Writer(c, tables)
            rows += w.insert_lists("vm_instance", vm_rows)
            rows += w.insert_lists("volume", vol_rows)
            rows += w.insert_lists("vm_nic", nic_rows)
            rows += w.insert_lists("used_ip", ip_rows)
    with engine.begin() as c:
        for sql in ddl:
            c.exec_driver_sql(sql)
    if analyze:
        with engine.begin() as c:
            c.exec_driver_sql("ANALYZE")
    engine.dispose()
    out.rows = rows
    out.seconds = time.perf_counter() - t0
    out.cpu_seconds = time.thread_time() - cpu0
    return out
