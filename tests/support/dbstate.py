"""A database's whole state for before/after comparisons: every row and every Query answer.

``db_url`` (a pytest fixture over sqlite, mysql and postgresql: a fresh database each),
``fill`` (a simulator cloud with VMs, volumes, snapshots, tags, changed global config),
``table_rows`` and ``query_answers``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text

from tests.conftest import ENGINE_SERVERS, need
from tests.support.inproc import Api
from tests.support.services import port_open
from tests.support.vmcloud import GiB, build_cloud

ENGINES = ["sqlite", "mysql", "postgresql"]
VOLATILE = {"QueryManagementNode"}  # heartbeats move on their own


def fresh_database(engine: str, tmp_path: Path, label: str = "zmn") -> Iterator[str]:
    """A new empty database on ``engine`` (dropped afterwards)."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / label}.db"
        return
    server, port = ENGINE_SERVERS[engine]
    need(port_open(port), f"{engine} is not running on 127.0.0.1:{port}")
    admin = create_engine(
        server + ("postgres" if engine == "postgresql" else ""), isolation_level="AUTOCOMMIT"
    )
    name = f"zmn_{label}_" + uuid.uuid4().hex[:12]
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server + name
    finally:
        force = " WITH (FORCE)" if engine == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


def table_rows(
    url: str, drop: dict[str, set[str]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (sorted by primary key), minus the ``drop`` columns."""
    engine = create_engine(url)
    try:
        found: dict[str, list[dict[str, Any]]] = {}
        insp = inspect(engine)
        with engine.connect() as conn:
            for table in sorted(insp.get_table_names()):
                pk = insp.get_pk_constraint(table)["constrained_columns"] or [
                    c["name"] for c in insp.get_columns(table)
                ]
                order = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in pk)
                quoted = conn.dialect.identifier_preparer.quote(table)
                rows = conn.execute(text(f"SELECT * FROM {quoted} ORDER BY {order}"))
                skip = (drop or {}).get(table, set())
                found[table] = [
                    {k: v for k, v in r._mapping.items() if k not in skip} for r in rows
                ]
        return found
    finally:
        engine.dispose()


async def query_answers(api: Api) -> dict[str, Any]:
    answers = {}
    for name in sorted(api.node.apis.apis):
        if name.startswith("Query") and name not in VOLATILE:
            answers[name] = await api(name, limit=1000, replyWithCount=True)
    return answers


async def fill(api: Api) -> None:
    cloud = await build_cloud(api)
    for i in range(3):
        vm = await cloud.vm(f"vm-{i}")
        await api("CreateSystemTag", resourceType="VmInstance", resourceUuid=vm["uuid"],
                  tag=f"hostname::vm{i}")  # fmt: skip
    await api(
        "StopVmInstance",
        uuid=(await api("QueryVmInstance", conditions=["name=vm-1"]))["inventories"][0]["uuid"],
    )
    vol = (await api("CreateDataVolume", name="data", diskOfferingUuid=cloud["d10"]))["inventory"]
    await api("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=vm["uuid"])
    await api("CreateVolumeSnapshot", volumeUuid=vol["uuid"], name="snap")
    await api("UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Delay")
    await api("CreateUserTag", resourceType="VmInstance", resourceUuid=vm["uuid"], tag="team-a")
    await api("CreateInstanceOffering", name="big", cpuNum=4, memorySize=8 * GiB)
