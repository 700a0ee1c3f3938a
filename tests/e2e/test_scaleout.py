"""Two management nodes started with ``zmn init && zmn start`` on one database and one broker.

Each test makes a fresh MariaDB or PostgreSQL database and a RabbitMQ namespace of its own,
initialises two homes against them (the second joins the schema the first created), starts
both, builds the reference cloud through one socket and creates VMs through both. Then one
node is killed with ``kill -9``: the survivor must evict it within ``maxMissed`` beats plus a
second (``heartbeat.interval=1``, ``maxMissed=3``), reconnect the hosts it owned, keep
serving (VM operations on the dead node's hosts, new creates) and report no inconsistency.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import need
from tests.support.proc import ZmnProcess

ROOT = Path(__file__).resolve().parents[2]
BUS_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
SERVICES = ("mysql+pymysql://root@127.0.0.1:3306/", "postgresql+psycopg://postgres@127.0.0.1:5432/")

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


@pytest.fixture(
    params=[
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the real server, dropped afterwards."""
    name = "zmn_so_" + uuid.uuid4().hex[:10]
    if request.param == "mariadb":
        need(port_open(3306), "MariaDB is not running on 127.0.0.1:3306")
        server, drop = SERVICES[0], f"DROP DATABASE IF EXISTS {name}"
    else:
        need(port_open(5432), "PostgreSQL is not running on 127.0.0.1:5432")
        server, drop = SERVICES[1] + "postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(drop))
        admin.dispose()


@pytest.fixture
def namespace() -> Iterator[str]:
    need(port_open(5672), "RabbitMQ is not running on 127.0.0.1:5672")
    ns = "zso" + uuid.uuid4().hex[:10]
    yield ns
    conn = pika.BlockingConnection(pika.URLParameters(BUS_URL))
    try:
        ch = conn.channel()
        ch.queue_delete(f"{ns}.api.portal")
        ch.exchange_delete(f"{ns}.zmn.events")
    finally:
        conn.close()


class Node(ZmnProcess):
    """A home whose zmn.conf points at the shared database and broker."""

    def api(self, name: str, *args: str, ok: bool = True) -> Any:
        result = self.zcli("-o", "json", "api", name, *args, timeout=120)
        if ok:
            assert result.code == 0, f"{name} {args}: {result.err}"
            return result.json() if result.out.strip() else None
        return result

    def status(self) -> dict[str, Any]:
        result = self.zmn("status", "-o", "json")
        assert result.code == 0, result.err
        data: dict[str, Any] = result.json()
        return data

    @property
    def uuid(self) -> str:
        return (self.home / "node.uuid").read_text().strip()


@pytest.fixture
def cluster(tmp_path: Path, db_url: str, namespace: str) -> Iterator[list[Node]]:
    nodes = []
    for name in ("n1", "n2"):
        home = tmp_path / name / "home"
        home.mkdir(parents=True)
        (home / "zmn.conf").write_text(
            f"db.url={db_url}\nbus.url={BUS_URL}\nbus.namespace={namespace}\nnode.name={name}\n"
            "shutdown.grace=5\n"
        )
        nodes.append(Node(home))
    yield nodes
    for node in nodes:
        node.stop_quietly()


def test_two_nodes_share_vms_and_survive_a_kill(cluster: list[Node]) -> None:
    a, b = cluster
    first = a.zmn("init")
    assert first.code == 0, first.err
    assert "created the database schema" in first.out
    second = b.zmn("init")
    assert second.code == 0, second.err
    assert "joined the existing database" in second.out
    assert "account admin exists" in second.out
    for node in cluster:
        started = node.zmn("start", "--wait", "60")
        assert started.code == 0, started.err + started.out

    # both see the same ring of two nodes, each owning a share of it
    def ring_of_two(node: Node) -> dict[str, Any] | None:
        ring: dict[str, Any] = node.status()["ring"]
        return ring if len(ring["members"]) == 2 else None

    rings = [wait_for("a ring of two", lambda n=n: ring_of_two(n)) for n in cluster]
    assert {m["uuid"] for m in rings[0]["members"]} == {a.uuid, b.uuid}
    assert rings[0]["members"] == rings[1]["members"]
    assert 0.2 < rings[0]["share"] < 0.8 and abs(rings[0]["share"] + rings[1]["share"] - 1) < 1e-3
    text_status = a.zmn("status")
    assert "ring" in text_status.out and "2 node(s)" in text_status.out
    nodes = {n["uuid"]: n for n in a.api("QueryManagementNode")}
    assert nodes[b.uuid]["state"] == "Running" and nodes[b.uuid]["onRing"] is True

    a.api("UpdateGlobalConfig", "category=managementNode", "name=heartbeat.interval", "value=1")
    a.api("UpdateGlobalConfig", "category=managementNode", "name=heartbeat.maxMissed", "value=3")
    built = a.zcli("-f", str(ROOT / "demo" / "cloud.zcli"), timeout=180)
    assert built.code == 0, built.err + built.out
    hosts = {h["uuid"]: h for h in b.api("QueryHost")}
    assert len(hosts) == 3

    created: dict[str, str] = {}  # VM UUID -> node that created it
    for i in range(6):
        node = cluster[i % 2]
        vm = node.api(
            "CreateVmInstance",
            f"name=vm{i}",
            "imageUuid=img",
            "instanceOfferingUuid=small",
            "l3NetworkUuids=l3",
        )
        assert vm["state"] == "Running"
        created[vm["uuid"]] = node.uuid
    for node in cluster:  # the same VMs through either socket
        seen = {v["uuid"]: v["state"] for v in node.api("QueryVmInstance")}
        assert seen == dict.fromkeys(created, "Running")
    # an operation on any VM works from either node: it goes to the VM's owner
    some = sorted(created)
    assert b.api("StopVmInstance", f"uuid={some[0]}")["state"] == "Stopped"
    assert a.api("StartVmInstance", f"uuid={some[0]}")["state"] == "Running"

    # b's share of the hosts (by the ring) is what a must take over when b dies
    assert a.status()["ring"]["heartbeatInterval"] == 1
    killed_at = time.monotonic()
    b.kill9()

    def evicted() -> bool:
        rows = {n["uuid"]: n for n in a.api("QueryManagementNode")}
        return rows[b.uuid]["state"] == "Evicted"

    wait_for("b evicted", evicted, timeout=15, step=0.05)
    took = time.monotonic() - killed_at
    assert took <= 3 * 1 + 1 + 0.5, f"eviction took {took:.2f}s"  # 0.5 s: polling through zcli

    ring = wait_for("a alone on the ring", lambda: ring_of_two(a) is None and a.status()["ring"])
    assert [m["uuid"] for m in ring["members"]] == [a.uuid] and ring["share"] == 1
    takeover = wait_for(
        "the takeover to finish",
        lambda: next(
            (t for t in a.status()["ring"]["takeovers"] if t["node"] == b.uuid and "seconds" in t),
            None,
        ),
    )
    assert takeover["reconnected"] == len(takeover["hosts"])
    for host in a.api("QueryHost"):
        assert host["status"] == "Connected", host

    # keeps serving: every VM (also those on b's former hosts) can be stopped and started
    for vm_uuid in some:
        assert a.api("StopVmInstance", f"uuid={vm_uuid}")["state"] == "Stopped"
        assert a.api("StartVmInstance", f"uuid={vm_uuid}")["state"] == "Running"
    vm = a.api(
        "CreateVmInstance",
        "name=after",
        "imageUuid=img",
        "instanceOfferingUuid=small",
        "l3NetworkUuids=l3",
    )
    assert vm["state"] == "Running"
    assert (
        a.api("CheckConsistency") == {"violations": []}
        or a.api("CheckConsistency")["violations"] == []
    )
    print(
        "\nscale-out:",
        json.dumps({"evictSeconds": round(took, 2), "takeover": takeover}, default=str),
    )
