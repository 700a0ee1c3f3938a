"""Host allocation: filters, a strategy, and a reservation that is safe across nodes.

Filters, in order (each failure names the filter that left no host):

1. scope: zone / cluster / host asked for, minus hosts to avoid;
2. state Enabled and status Connected;
3. network: the host's cluster is attached to the L2 network of every L3 the VM uses;
4. storage: the cluster is attached to the VM's primary storages, or to an enabled one with
   room for the new volumes;
4b. storage-host: the host can use those storages (a :class:`HostStorageAccess` plugin says
   which cannot: a shared storage whose marker the host has not read); not applied to a host
   asked for by name, whose refusal the storage's own check explains;
5. capacity: placed + needed <= total x over-provisioning ratio (global config).

The reservation is one conditional ``UPDATE ... WHERE <capacity condition>``: when another node
took the room meanwhile, the row count is 0 and the next candidate is tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Float, Table, bindparam, select, update

from zmn.api.errors import OperationFailed
from zmn.core.hosthooks import HostStorageAccess
from zmn.services.host.models import HostVO
from zmn.services.host.vmapi import AllocateHost

if TYPE_CHECKING:
    from zmn.core.fastsql import AnyConnection
    from zmn.core.node import Node

GiB = 1024**3

STRATEGIES = {
    "DefaultHostAllocatorStrategy": "default",
    "LastHostPreferredAllocatorStrategy": "default",
    "LeastVmPreferredHostAllocatorStrategy": "least-used",
    "MinimumCPUUsageHostAllocatorStrategy": "least-cpu",
    "MinimumMemoryUsageHostAllocatorStrategy": "least-used",
}


@dataclass(frozen=True)
class Ratios:
    cpu: float
    memory: float


def ratios(node: Node) -> Ratios:
    return Ratios(
        float(node.global_config.get("host", "cpu.overProvisioning.ratio")),
        float(node.global_config.get("host", "memory.overProvisioning.ratio")),
    )


def room_condition(cpu: int, memory: int, r: Ratios) -> list[Any]:
    """SQL: the host can take ``cpu`` and ``memory`` more within the ratios."""
    return [
        HostVO.totalCpuCapacity * r.cpu - (HostVO.totalCpuCapacity - HostVO.availableCpuCapacity)
        >= cpu,
        HostVO.totalMemoryCapacity * r.memory
        - (HostVO.totalMemoryCapacity - HostVO.availableMemoryCapacity)
        >= memory,
    ]


def has_room(h: Any, cpu: int, memory: int, r: Ratios) -> bool:
    placed_cpu = h.totalCpuCapacity - h.availableCpuCapacity
    placed_mem = h.totalMemoryCapacity - h.availableMemoryCapacity
    return bool(
        h.totalCpuCapacity * r.cpu - placed_cpu >= cpu
        and h.totalMemoryCapacity * r.memory - placed_mem >= memory
    )


def _link_table(node: Node, left: str, right: str) -> tuple[Any, str, str] | None:
    """(table, column of ``left``, column of ``right``) of the link between two types."""
    for link in node.resources.links:
        if link.left == left and link.right == right:
            return link.table, link.left_column, link.right_column
        if link.left == right and link.right == left:
            return link.table, link.right_column, link.left_column
    return None


# Statements built once (per link table and shape) and reused: SQLAlchemy caches their
# compiled form, so an allocation costs the queries, not building and compiling them.
_statements: dict[Any, Any] = {}


def _cached(key: Any, build: Callable[[], Any]) -> Any:
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements[key] = build()
    return stmt


def clusters_reaching_l3s(node: Node, conn: AnyConnection, l3_uuids: list[str]) -> set[str] | None:
    """Clusters attached to the L2 network of every given L3 (None: no constraint)."""
    if not l3_uuids:
        return None
    l3_model = node.resources.get("L3Network").model
    link = _link_table(node, "L2Network", "Cluster")
    if link is None:
        return set()
    table, l2_col, cluster_col = link
    stmt = _cached(
        ("l3-clusters", l3_model, table, l2_col, cluster_col),
        lambda: select(getattr(table, cluster_col)).where(
            getattr(table, l2_col)
            == select(l3_model.l2NetworkUuid)
            .where(l3_model.uuid == bindparam("l3"))
            .scalar_subquery()
        ),
    )
    result: set[str] | None = None
    for l3 in set(l3_uuids):
        clusters = set(conn.scalars(stmt, {"l3": l3}))
        result = clusters if result is None else result & clusters
    return result or set()


def clusters_with_storage(
    node: Node, conn: AnyConnection, ps_uuids: list[str], size: int
) -> set[str] | None:
    """Clusters attached to every given primary storage and, when ``size`` is given, to an
    enabled, connected one with ``size`` bytes free (None: no constraint)."""
    if not ps_uuids and size <= 0:
        return None
    link = _link_table(node, "PrimaryStorage", "Cluster")
    if link is None:
        return set()
    table, ps_col, cluster_col = link
    result: set[str] | None = None
    attached = _cached(
        ("ps-clusters", table, ps_col, cluster_col),
        lambda: select(getattr(table, cluster_col)).where(
            getattr(table, ps_col) == bindparam("ps")
        ),
    )
    for ps in set(ps_uuids):
        clusters = set(conn.scalars(attached, {"ps": ps}))
        result = clusters if result is None else result & clusters
    if size > 0:
        ps_model = node.resources.get("PrimaryStorage").model

        def build() -> Any:
            ok = select(ps_model.uuid).where(
                ps_model.state == "Enabled",
                ps_model.status == "Connected",
                ps_model.availableCapacity >= bindparam("size"),
            )
            return select(getattr(table, cluster_col)).where(getattr(table, ps_col).in_(ok))

        stmt = _cached(("roomy-clusters", ps_model, table, ps_col, cluster_col), build)
        roomy = set(conn.scalars(stmt, {"size": size}))
        result = roomy if result is None else result & roomy
    return result or set()


def hosts_without_storage(node: Node, conn: AnyConnection, msg: AllocateHost) -> dict[str, str]:
    """Hosts the storage plugins rule out for the storages asked for (host UUID -> why)."""
    if not msg.primaryStorageUuids or msg.hostUuid:
        return {}
    out: dict[str, str] = {}
    for impl in node.extensions.all(HostStorageAccess):  # type: ignore[type-abstract]
        out.update(impl.hosts_without(conn, msg.primaryStorageUuids))
    return out


def order(candidates: list[Any], strategy: str, prefer: str | None) -> list[Any]:
    if strategy == "random":
        out = list(candidates)
        random.shuffle(out)
    elif strategy == "least-used":
        out = sorted(
            candidates, key=lambda h: (-h.availableMemoryCapacity, -h.availableCpuCapacity)
        )
    elif strategy == "least-cpu":
        out = sorted(
            candidates, key=lambda h: (-h.availableCpuCapacity, -h.availableMemoryCapacity)
        )
    else:
        out = sorted(candidates, key=lambda h: (h.name, h.uuid))
    if prefer:
        out.sort(key=lambda h: h.uuid != prefer)  # stable: the preferred host first
    return out


def _fail(reason: str, filter_name: str, **details: Any) -> OperationFailed:
    return OperationFailed(
        f"no host can take the VM: {reason}",
        code="HOST.ALLOCATION_FAILED",
        filter=filter_name,
        **details,
    )


def _size(n: int) -> str:
    return f"{n / GiB:g} GiB" if n % (GiB // 4) == 0 else f"{n} bytes"


_HOST = cast(Table, HostVO.__table__)


def _scope_statement(zone: bool, cluster: bool, host: bool, avoid: bool) -> Any:
    def build() -> Any:
        stmt = select(_HOST)
        if zone:
            stmt = stmt.where(_HOST.c.zoneUuid == bindparam("zone"))
        if cluster:
            stmt = stmt.where(_HOST.c.clusterUuid == bindparam("cluster"))
        if host:
            stmt = stmt.where(_HOST.c.uuid == bindparam("host"))
        if avoid:
            stmt = stmt.where(_HOST.c.uuid.not_in(bindparam("avoid", expanding=True)))
        return stmt

    return _cached(("scope", zone, cluster, host, avoid), build)


def candidates(node: Node, conn: AnyConnection, msg: AllocateHost) -> list[Any]:
    """Hosts passing every filter but capacity, or the error naming the filter that failed."""
    stmt = _scope_statement(
        bool(msg.zoneUuid), bool(msg.clusterUuid), bool(msg.hostUuid), bool(msg.avoidHostUuids)
    )
    params = {
        "zone": msg.zoneUuid,
        "cluster": msg.clusterUuid,
        "host": msg.hostUuid,
        "avoid": list(msg.avoidHostUuids or []),
    }
    hosts = list(conn.execute(stmt, {k: v for k, v in params.items() if v}))
    if not hosts:
        return _raise(_fail("there is no host in the scope asked for", "scope"))
    hosts = [h for h in hosts if h.state == "Enabled" and h.status == "Connected"]
    if not hosts:
        return _raise(_fail("no host in scope is Enabled and Connected", "state"))
    reach = clusters_reaching_l3s(node, conn, msg.l3NetworkUuids)
    if reach is not None:
        hosts = [h for h in hosts if h.clusterUuid in reach]
        if not hosts:
            return _raise(
                _fail(
                    "no Enabled, Connected host is in a cluster attached to the L2 network of"
                    " every L3 network asked for",
                    "network",
                )
            )
    storage = clusters_with_storage(node, conn, msg.primaryStorageUuids, msg.primaryStorageSize)
    if storage is not None:
        hosts = [h for h in hosts if h.clusterUuid in storage]
        if not hosts:
            need = f" with {_size(msg.primaryStorageSize)} free" if msg.primaryStorageSize else ""
            return _raise(
                _fail(
                    f"no candidate host's cluster has the primary storage needed{need}", "storage"
                )
            )
    blind = hosts_without_storage(node, conn, msg)
    if blind:
        hosts = [h for h in hosts if h.uuid not in blind]
        if not hosts:
            why = "; ".join(f"host {u}: {reason}" for u, reason in sorted(blind.items())[:3])
            return _raise(
                _fail(
                    f"no candidate host can use the primary storage needed ({why})", "storage-host"
                )
            )
    return hosts


def _raise(exc: OperationFailed) -> list[Any]:
    raise exc


_RESERVE = (
    update(_HOST)
    .where(
        _HOST.c.uuid == bindparam("_uuid"),
        _HOST.c.state == "Enabled",
        _HOST.c.status == "Connected",
        # room within the over-provisioning ratios (room_condition with bound values)
        _HOST.c.totalCpuCapacity * bindparam("cpu_ratio", type_=Float())
        - (_HOST.c.totalCpuCapacity - _HOST.c.availableCpuCapacity)
        >= bindparam("cpu"),
        _HOST.c.totalMemoryCapacity * bindparam("memory_ratio", type_=Float())
        - (_HOST.c.totalMemoryCapacity - _HOST.c.availableMemoryCapacity)
        >= bindparam("memory"),
    )
    .values(
        availableCpuCapacity=_HOST.c.availableCpuCapacity - bindparam("cpu"),
        availableMemoryCapacity=_HOST.c.availableMemoryCapacity - bindparam("memory"),
    )
)
SELECT_HOST = select(_HOST).where(_HOST.c.uuid == bindparam("uuid"))


# The first few hosts passing every filter, capacity included, in the strategy's order: the
# filters and the order run in SQL, so an allocation reads a handful of rows whatever the
# number of hosts in scope (reading every host of a 10,000-host zone and sorting it in Python
# cost more than the rest of a create). Only when this finds no host (or every one of them
# was taken meanwhile) does the full scan below run, to name the filter that left none.
FIRST_FIT = 16
_ORDER: dict[str, Callable[[], tuple[Any, ...]]] = {
    "default": lambda: (_HOST.c.name, _HOST.c.uuid),
    "least-used": lambda: (
        _HOST.c.availableMemoryCapacity.desc(),
        _HOST.c.availableCpuCapacity.desc(),
        _HOST.c.name,
        _HOST.c.uuid,
    ),
    "least-cpu": lambda: (
        _HOST.c.availableCpuCapacity.desc(),
        _HOST.c.availableMemoryCapacity.desc(),
        _HOST.c.name,
        _HOST.c.uuid,
    ),
}


def _first_fit_statement(
    strategy: str, zone: bool, cluster: bool, host: bool, avoid: bool, clusters: bool
) -> Any:
    def build() -> Any:
        stmt = select(_HOST).where(
            _HOST.c.state == "Enabled",
            _HOST.c.status == "Connected",
            _HOST.c.totalCpuCapacity * bindparam("cpu_ratio", type_=Float())
            - (_HOST.c.totalCpuCapacity - _HOST.c.availableCpuCapacity)
            >= bindparam("cpu"),
            _HOST.c.totalMemoryCapacity * bindparam("memory_ratio", type_=Float())
            - (_HOST.c.totalMemoryCapacity - _HOST.c.availableMemoryCapacity)
            >= bindparam("memory"),
        )
        if zone:
            stmt = stmt.where(_HOST.c.zoneUuid == bindparam("zone"))
        if cluster:
            stmt = stmt.where(_HOST.c.clusterUuid == bindparam("cluster"))
        if host:
            stmt = stmt.where(_HOST.c.uuid == bindparam("host"))
        if avoid:
            stmt = stmt.where(_HOST.c.uuid.not_in(bindparam("avoid", expanding=True)))
        if clusters:
            stmt = stmt.where(_HOST.c.clusterUuid.in_(bindparam("clusters", expanding=True)))
        return stmt.order_by(*_ORDER[strategy]()).limit(FIRST_FIT)

    return _cached(("first-fit", strategy, zone, cluster, host, avoid, clusters), build)


def _first_fit(
    node: Node, conn: AnyConnection, msg: AllocateHost, strategy: str, r: Ratios
) -> list[Any] | None:
    """The first hosts that can take the VM, in order (preferred host first); None when the
    strategy is not ordered in SQL (random)."""
    if strategy not in _ORDER:
        return None
    reach = clusters_reaching_l3s(node, conn, msg.l3NetworkUuids)
    storage = clusters_with_storage(node, conn, msg.primaryStorageUuids, msg.primaryStorageSize)
    allowed = reach if storage is None else (storage if reach is None else reach & storage)
    if allowed is not None and not allowed:
        return []
    avoid = list(msg.avoidHostUuids or []) + sorted(hosts_without_storage(node, conn, msg))
    params: dict[str, Any] = {
        "cpu": msg.cpuNum,
        "memory": msg.memorySize,
        "cpu_ratio": r.cpu,
        "memory_ratio": r.memory,
    }
    for key, value in (
        ("zone", msg.zoneUuid),
        ("cluster", msg.clusterUuid),
        ("host", msg.hostUuid),
        ("avoid", avoid),
        ("clusters", sorted(allowed) if allowed is not None else None),
    ):
        if value:
            params[key] = value

    def query(host: str | None) -> list[Any]:
        args = dict(params, host=host) if host else params
        stmt = _first_fit_statement(
            strategy,
            "zone" in args,
            "cluster" in args,
            "host" in args,
            "avoid" in args,
            "clusters" in args,
        )
        return list(conn.execute(stmt, args))

    prefer = msg.preferHostUuid
    first = query(prefer) if prefer and not msg.hostUuid else []
    return first + [h for h in query(None) if not first or h.uuid != prefer]


def _reserve(conn: AnyConnection, host: Any, msg: AllocateHost, r: Ratios) -> Any:
    done = conn.execute(
        _RESERVE,
        {
            "_uuid": host.uuid,
            "cpu": msg.cpuNum,
            "memory": msg.memorySize,
            "cpu_ratio": r.cpu,
            "memory_ratio": r.memory,
        },
    )
    if getattr(done, "rowcount", 0) == 1:
        return conn.execute(SELECT_HOST, {"uuid": host.uuid}).one()
    return None


def allocate(node: Node, conn: AnyConnection, msg: AllocateHost, strategy: str) -> Any:
    """Choose and (unless ``dryRun``) reserve; runs inside one transaction (Core rows)."""
    r = ratios(node)
    for host in _first_fit(node, conn, msg, strategy, r) or []:
        if msg.dryRun:
            return host
        taken = _reserve(conn, host, msg, r)
        if taken is not None:
            return taken
    hosts = candidates(node, conn, msg)
    roomy = [h for h in hosts if has_room(h, msg.cpuNum, msg.memorySize, r)]
    if not roomy:
        best = max(hosts, key=lambda h: (h.availableMemoryCapacity, h.availableCpuCapacity))
        raise _fail(
            f"no host has {msg.cpuNum} vCPUs and {_size(msg.memorySize)} of memory free"
            f" (over-provisioning cpu x{r.cpu:g}, memory x{r.memory:g}; the freest host,"
            f" {best.name}, has {best.availableCpuCapacity} of {best.totalCpuCapacity} vCPUs and"
            f" {_size(best.availableMemoryCapacity)} of {_size(best.totalMemoryCapacity)} free)",
            "capacity",
            cpuNum=msg.cpuNum,
            memorySize=msg.memorySize,
        )
    for host in order(roomy, strategy, msg.preferHostUuid):
        if msg.dryRun:
            return host
        taken = _reserve(conn, host, msg, r)
        if taken is not None:
            return taken
    raise _fail("every candidate host was taken by concurrent allocations; try again", "capacity")
