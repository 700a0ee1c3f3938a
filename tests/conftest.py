"""Shared fixtures.

Tests that need root, libvirt, sshd, RabbitMQ, MariaDB or PostgreSQL carry a marker; outside
CI they skip with the reason printed when the need is not met; under ``CI=true`` they run and
fail instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from tests.support.passwords import cheap_password_hashes

IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip outside CI when ``condition`` is false; under CI=true, fail."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture
def cheap_hashes() -> Iterator[None]:
    """Password hashes at argon2's cheapest for one test (tests/support/passwords.py); a
    module takes it with ``pytest.mark.usefixtures("cheap_hashes")``."""
    with cheap_password_hashes():
        yield


@pytest.fixture(scope="module")
def cheap_hashes_module() -> Iterator[None]:
    """:func:`cheap_hashes` for a module-scoped fixture (a node shared by a module's tests)."""
    with cheap_password_hashes():
        yield


# --------------------------------------------------------------------------- database engines

# DB-touching modules that run on every engine the environment selects: ZMN_TEST_DB is a
# comma-separated list of sqlite, mysql (MariaDB) and postgresql, or "all"; the default is
# all three under CI=true and sqlite elsewhere.
ENGINE_MODULES = {
    "tests.unit.test_crud",
    "tests.unit.test_fastsql",
    "tests.unit.test_query_compiler",
    "tests.unit.test_query_paging",
    "tests.integration.test_resources_scenario",
    "tests.integration.test_vm_lifecycle",
    "tests.integration.test_allocator_shared_storage",
    "tests.integration.test_vm_cloudinit",
    "tests.integration.test_used_ip_cache",
    "tests.integration.test_tracker_boot",
    "tests.integration.test_metrics_on_demand",
    "tests.security.test_lockout_concurrency",
}
ENGINE_SERVERS = {
    "mysql": ("mysql+pymysql://root@127.0.0.1:3306/", 3306),
    "postgresql": ("postgresql+psycopg://postgres@127.0.0.1:5432/", 5432),
}


def selected_engines() -> list[str]:
    chosen = os.environ.get("ZMN_TEST_DB") or ("all" if IN_CI else "sqlite")
    names = ["sqlite", *ENGINE_SERVERS] if chosen == "all" else chosen.split(",")
    unknown = set(names) - {"sqlite", *ENGINE_SERVERS}
    if unknown:
        raise pytest.UsageError(f"ZMN_TEST_DB: unknown engine(s) {', '.join(sorted(unknown))}")
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    engines = selected_engines()
    if engines != ["sqlite"] and metafunc.module.__name__ in ENGINE_MODULES:
        metafunc.parametrize("db_engine", engines, indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def db_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """In the modules of ENGINE_MODULES: every database the tests open lives on this engine.

    A module-scoped fixture of such a module that opens a database must take ``db_engine``
    as an argument, so that it is made again for each engine rather than kept from the
    previous one (whose databases are dropped).

    For MariaDB and PostgreSQL, each SQLite URL a test opens (a node home's file, an
    in-memory database) becomes a fresh database with a random name on the server, the same
    one for the same file; all are dropped when the module is done.
    """
    engine = getattr(request, "param", "sqlite")
    if engine == "sqlite":
        yield engine
        return
    import socket
    import uuid

    from sqlalchemy import create_engine, text

    import zmn.core.db as zdb

    server, port = ENGINE_SERVERS[engine]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        need(False, f"{engine} is not running on 127.0.0.1:{port}")
    admin_url = server + ("postgres" if engine == "postgresql" else "")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    made: dict[str, str] = {}
    real = zdb.make_engine

    def on_server(url: str, **kw: Any) -> Any:
        if not url.startswith("sqlite"):
            return real(url, **kw)
        key = url if url not in ("sqlite://", "sqlite:///:memory:") else uuid.uuid4().hex
        if key not in made:
            name = "zmn_t_" + uuid.uuid4().hex[:12]
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
            made[key] = name
        return real(server + made[key], **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zdb, "make_engine", on_server)
        yield engine
    force = " WITH (FORCE)" if engine == "postgresql" else ""
    with admin.connect() as conn:
        for name in made.values():
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    admin.dispose()


@pytest.fixture
async def node_api(tmp_path: Path) -> AsyncIterator[Api]:
    """An in-process node with every built-in service; call APIs as admin."""
    async with running_node(tmp_path / "home") as (node, _server):
        yield Api(node)
