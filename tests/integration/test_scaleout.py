"""Scale-out pieces below the two-process test: ring shares, routing keys, status, refusals.

``tests/e2e/test_scaleout.py`` runs two real nodes on MariaDB/PostgreSQL and RabbitMQ; these
tests pin the parts that do not need a second process: the ring a single node shows, where a
call is routed, ``zmn start`` refusing SQLite for several nodes, and ``zmn init`` joining a
shared database instead of re-creating it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update

from tests.conftest import need
from tests.support.inproc import Api, running_node
from tests.support.proc import ZmnProcess
from tests.support.services import port_open
from zmn.api.errors import Unavailable
from zmn.api.message import decode_args
from zmn.core.bus import Envelope, Principal
from zmn.core.cluster import ClusterBus, host_key, ring_shares
from zmn.core.db import Database
from zmn.core.models import GlobalConfigVO, ManagementNodeVO
from zmn.core.node import _routing_uuid
from zmn.core.ring import HashRing

ADMIN = Principal("0" * 32, "admin", "SystemAdmin")


def test_ring_shares_cover_the_hash_space_evenly() -> None:
    assert ring_shares(HashRing()) == {}
    nodes = [uuid.uuid4().hex for _ in range(3)]
    shares = ring_shares(HashRing(nodes))
    assert set(shares) == set(nodes)
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert all(0.2 < s < 0.47 for s in shares.values()), shares  # 200 vnodes: near 1/3 each
    # the share is what owner() hands out
    ring = HashRing(nodes)
    keys = [uuid.uuid4().hex for _ in range(20_000)]
    for node in nodes:
        owned = sum(1 for k in keys if ring.owner(k) == node) / len(keys)
        assert abs(owned - shares[node]) < 0.02


async def test_single_node_shows_itself_on_the_ring(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        status = await api("GetManagementNodeStatus")
        ring = status["ring"]
        assert ring["members"] == [{"uuid": node.uuid, "share": 1.0}]
        assert ring["share"] == 1.0 and ring["fenced"] is False
        rows = (await api("QueryManagementNode"))["inventories"]
        assert [(r["uuid"], r["state"], r["onRing"], r["ringShare"]) for r in rows] == [
            (node.uuid, "Running", True, 1.0)
        ]
        # routing keys: a call about a resource carries its UUID; creates and jobs do not
        zone = (await api("CreateZone", name="z1"))["inventory"]
        update = decode_args(node.apis.get("UpdateZone"), {"uuid": zone["uuid"], "name": "z2"})
        assert _routing_uuid(update) == zone["uuid"]
        create = decode_args(node.apis.get("CreateZone"), {"name": "z3", "resourceUuid": "a" * 32})
        assert _routing_uuid(create) is None
        wait = decode_args(node.apis.get("WaitJob"), {"uuid": "b" * 32})
        assert _routing_uuid(wait) is None
        # internal host messages follow their host; API messages do not use hostUuid
        op = node.apis.get("HypervisorOp")
        msg = decode_args(op, {"hostUuid": "c" * 32, "op": "start", "vm": {}, "args": {}})
        assert host_key(msg) == "c" * 32
        assert host_key(update) is None
    # a clean stop records the node as Stopped
    async with running_node(tmp_path / "home") as (node, _server):
        rows = (await Api(node)("QueryManagementNode"))["inventories"]
        assert [r["state"] for r in rows] == ["Running"]


def test_cluster_bus_routes_host_messages_to_the_host_owner() -> None:
    a, b = "a" * 32, "b" * 32
    bus = ClusterBus("amqp://guest:guest@127.0.0.1:5672/%2F", a, lambda n, x: x)
    bus.ring = HashRing([a, b])
    host = next(h for h in (uuid.uuid4().hex for _ in range(100)) if bus.ring.owner(h) == b)

    class Spec:
        internal, service = True, "host"

    class HostOp:
        __api__ = Spec()

        def __init__(self, host: str) -> None:
            self.hostUuid = host

    assert bus.owner_of(Envelope("HypervisorOp", HostOp(host), ADMIN)) == b
    # the envelope's own resource wins; a message without a host stays here
    mine = next(h for h in (uuid.uuid4().hex for _ in range(100)) if bus.ring.owner(h) == a)
    assert bus.owner_of(Envelope("X", HostOp(host), ADMIN, resource_uuid=mine)) == a
    assert bus.owner_of(Envelope("X", {"hostUuid": host}, ADMIN)) == a


def test_start_refuses_sqlite_with_a_rabbitmq_bus(tmp_path: Path) -> None:
    node = ZmnProcess(tmp_path / "home")
    assert node.zmn("init").code == 0
    conf = node.home / "zmn.conf"
    conf.write_text(conf.read_text() + "bus.url=amqp://guest:guest@127.0.0.1:5672/%2F\n")
    for args in (("start",), ("start", "--foreground")):
        result = node.zmn(*args, timeout=60)
        assert result.code == 1, result
        assert "SQLite" in result.err and "db.url=mysql+pymysql://" in result.err
    assert node.pid() is None


@pytest.fixture(
    params=[
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def shared_db(request: pytest.FixtureRequest) -> Iterator[str]:
    name = "zmn_so_" + uuid.uuid4().hex[:10]
    if request.param == "mariadb":
        need(port_open(3306), "MariaDB is not running on 127.0.0.1:3306")
        server = "mysql+pymysql://root@127.0.0.1:3306/"
        drop = f"DROP DATABASE IF EXISTS {name}"
    else:
        need(port_open(5432), "PostgreSQL is not running on 127.0.0.1:5432")
        server = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(drop))
        admin.dispose()


def test_init_joins_a_shared_database_without_recreating_it(tmp_path: Path, shared_db: str) -> None:
    first, second = ZmnProcess(tmp_path / "a" / "home"), ZmnProcess(tmp_path / "b" / "home")
    made = first.zmn("init", "--db-url", shared_db)
    assert made.code == 0, made.err
    assert "created the database schema" in made.out and "created account admin" in made.out
    db = Database(shared_db)
    try:
        with db.tx() as s:  # a row written between the two inits must survive
            s.add(
                GlobalConfigVO(
                    category="scaleout", name="marker", value="1", defaultValue="1", type="int"
                )
            )
        joined = second.zmn("init", "--db-url", shared_db)
        assert joined.code == 0, joined.err
        assert "joined the existing database" in joined.out
        assert "account admin exists" in joined.out and "created account" not in joined.out
        with db.tx() as s:
            assert s.get(GlobalConfigVO, ("scaleout", "marker")) is not None
    finally:
        db.dispose()


async def test_an_evicted_node_fences_itself(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        exits: list[bool] = []
        node.on_fenced = lambda: exits.append(True)
        cluster = node.services["management"].cluster  # type: ignore[attr-defined]
        with node.db.tx() as s:  # what a survivor's sweep does
            s.execute(
                update(ManagementNodeVO)
                .where(ManagementNodeVO.uuid == node.uuid)
                .values(state="Evicted")
            )
        assert await cluster.membership.tick() is False
        assert exits == [True] and node.stopping
        assert cluster.describe()["fenced"] is True
        with pytest.raises(Unavailable):
            await Api(node)("CreateZone", name="late")
