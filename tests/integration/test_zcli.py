"""zcli as a subprocess against a real in-process node (real socket, real SQLite).

The node keeps serving on the test's event loop while each zcli runs through
``asyncio.create_subprocess_exec``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import running_node
from zmn.core.node import Node
from zmn.server import ApiServer

ROOT = Path(__file__).resolve().parents[2]
UUID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Zcli:
    """Runs ``python -m zcli.main`` with the endpoint and XDG dirs of one test."""

    def __init__(self, tmp: Path, node: Node, server: ApiServer) -> None:
        self.node = node
        self.server = server
        self.home = tmp / "home"
        self.config = tmp / "config"
        self.cache = tmp / "cache"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_", "NO_COLOR"))
        }
        self.env.update(
            ZMN_ENDPOINT=f"unix:{self.home / 'zmn.sock'}",
            ZMN_HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.config),
            XDG_CACHE_HOME=str(self.cache),
            PYTHONPATH=str(ROOT),
        )

    async def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> Run:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "zcli.main",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})},
            cwd=ROOT,
        )
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), 60
        )
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, stdin: str | None = None) -> Run:
        run = await self(*args, stdin=stdin)
        assert run.rc == 0, f"zcli {' '.join(args)} -> {run.rc}\n{run.err}"
        return run


@pytest.fixture
async def zcli(tmp_path: Path) -> AsyncIterator[Zcli]:
    async with running_node(tmp_path / "home") as (node, server):
        yield Zcli(tmp_path, node, server)


async def test_reference_scenario(zcli: Zcli) -> None:
    first = await zcli.ok("-o", "json", "api", "CreateZone", "name=z1")
    z1 = first.json()
    assert UUID.match(z1["uuid"]) and z1["name"] == "z1" and z1["state"] == "Enabled"

    created = await zcli.ok("zone", "create", "--name", "z2", "--description", "second zone")
    assert created.err == ""
    assert "z2" in created.out and "second zone" in created.out

    table = await zcli.ok("zone", "list")
    lines = table.out.splitlines()
    assert lines[0].split() == ["uuid", "name", "state", "description"]  # the catalogue's columns
    assert "createDate" not in table.out and "\x1b[" not in table.out
    assert {line.split()[1] for line in lines[2:]} == {"z1", "z2"}

    got = (await zcli.ok("-o", "json", "zone", "get", "z1")).json()
    assert got == z1
    assert (await zcli.ok("-o", "json", "zone", "get", z1["uuid"])).json()["name"] == "z1"

    rows = (await zcli.ok("-o", "json", "api", "QueryZone", "name=z1")).json()
    assert isinstance(rows, list) and [r["uuid"] for r in rows] == [z1["uuid"]]
    assert (await zcli.ok("-o", "json", "api", "QueryZone", "count=true")).json() == {"total": 2}
    assert (await zcli.ok("-o", "json", "zone", "list", "--count", "name=z1")).json() == {
        "total": 1
    }

    quiet = await zcli.ok("-q", "zone", "list")
    every = (await zcli.ok("-o", "json", "zone", "list")).json()
    assert sorted(quiet.out.splitlines()) == sorted(z["uuid"] for z in every)
    assert len(every) == 2

    names = await zcli.ok("-o", "value", "-c", "name", "zone", "list", "--sort-by", "name")
    assert names.out == "z1\nz2\n"
    csv_out = await zcli.ok("-o", "csv", "-c", "name,state", "zone", "list", "name=z2")
    assert csv_out.out == "name,state\nz2,Enabled\n"
    no_header = await zcli.ok("-o", "csv", "--no-header", "-c", "name", "zone", "list", "name=z2")
    assert no_header.out == "z2\n"

    updated = (
        await zcli.ok("-o", "json", "zone", "update", "z2", "--description", "renamed")
    ).json()
    assert updated["description"] == "renamed"
    state = (
        await zcli.ok("-o", "json", "zone", "change-state", "z2", "--state-event", "disable")
    ).json()
    assert state["state"] == "Disabled"
    yaml_out = await zcli.ok("-o", "yaml", "zone", "get", "z2")
    assert "state: Disabled" in yaml_out.out
    deleted = await zcli.ok("zone", "delete", "z2")
    assert deleted.out == ""
    assert (await zcli.ok("-o", "json", "zone", "list", "--count")).json() == {"total": 1}


async def test_bad_parameter_exits_2_naming_the_field(zcli: Zcli) -> None:
    run = await zcli("zone", "create", "--nmae", "z1")
    assert run.rc == 2 and run.out == ""
    assert (
        "error: ARG.UNKNOWN:" in run.err
        and "field: nmae" in run.err
        and "did you mean name?" in run.err
    )
    # a bad value is refused by the node: still exit 2, still the field
    run = await zcli("zone", "change-state", "z1", "--state-event", "explode")
    assert run.rc in (2, 3)
    await zcli.ok("zone", "create", "z1")
    run = await zcli("zone", "change-state", "z1", "--state-event", "explode")
    assert run.rc == 2 and run.out == "" and "field: stateEvent" in run.err
    run = await zcli("zone", "list", "nmae=z1")
    assert run.rc == 2 and run.out == "" and "nmae" in run.err
    run = await zcli("zoen", "list")
    assert run.rc == 2 and "did you mean zone?" in run.err
    run = await zcli("zone", "crate")
    assert run.rc == 2 and "did you mean create?" in run.err
    run = await zcli("-o", "jsn", "zone", "list")
    assert run.rc == 2 and "json" in run.err


async def test_missing_resource_exits_3_and_duplicate_exits_4(zcli: Zcli) -> None:
    run = await zcli("zone", "get", "nowhere")
    assert run.rc == 3 and run.out == ""
    assert "error: ZONE.NOT_FOUND:" in run.err
    run = await zcli("zone", "delete", "nowhere")
    assert run.rc == 3 and "NOT_FOUND" in run.err
    await zcli.ok("zone", "create", "z1")
    run = await zcli("zone", "create", "z1")
    assert run.rc == 4 and "ZONE.DUPLICATE_NAME" in run.err


async def test_batch_stops_at_the_first_failing_line(zcli: Zcli) -> None:
    script = "# set up\n\nzcli zone create z1\nzone create --nmae z2\nzone create z3\n"
    run = await zcli("-f", "-", stdin=script)
    assert run.rc == 2
    assert "field: nmae" in run.err and "line 4" in run.err
    names = await zcli.ok("-o", "value", "-c", "name", "zone", "list")
    assert names.out == "z1\n"  # line 5 never ran

    script = (
        "zone create --nmae z2\n-o json zone create z3\nzone get nowhere\n-q zone list name=z3\n"
    )
    run = await zcli("--continue-on-error", "-f", "-", stdin=script)
    assert run.rc == 2  # the first failure's status
    assert '"name": "z3"' in run.out and "ZONE.NOT_FOUND" in run.err
    assert UUID.match(run.out.splitlines()[-1])


async def test_batch_file_and_one_connection(zcli: Zcli, tmp_path: Path) -> None:
    connections = 0
    serve = zcli.server._serve

    async def counting(*args: Any) -> None:
        nonlocal connections
        connections += 1
        await serve(*args)

    zcli.server._serve = counting  # type: ignore[method-assign]
    path = tmp_path / "setup.zcli"
    path.write_text(
        "-q zone create 'zone one' --description 'a b'\n"
        "-o value -c description zone get 'zone one'\n"
        "zcli -o json zone list  # a comment\n"
    )
    run = await zcli.ok("-f", str(path))
    assert UUID.match(run.out.splitlines()[0]) and run.out.splitlines()[1] == "a b"
    assert json.loads("\n".join(run.out.splitlines()[2:]))[0]["name"] == "zone one"
    assert connections == 1
    missing = await zcli("-f", str(tmp_path / "nope"))
    assert missing.rc == 2 and "cannot read" in missing.err


async def test_help_is_generated_from_the_catalogue(zcli: Zcli) -> None:
    top = await zcli.ok("--help")
    assert (
        "zone" in top.out
        and "change-state" in top.out
        and "exit status" in top.out
        and "124" in top.out
    )
    verb = await zcli.ok("zone", "create", "--help")
    assert "--name, name=  string; required" in verb.out and "zone name" in verb.out
    assert "CreateZone" in verb.out
    api = await zcli.ok("api", "QueryZone", "--help")
    assert "--sort-by, sortBy=" in api.out and "Enabled|Disabled" in api.out
    res = await zcli.ok("zone", "--help")
    assert "table columns: uuid, name, state, description" in res.out
    assert (await zcli("help", "zoen")).rc == 2
    bare = await zcli()
    assert bare.rc == 2 and bare.out == "" and "usage:" in bare.err


async def test_catalogue_is_cached_by_hash(zcli: Zcli) -> None:
    await zcli.ok("zone", "list")
    files = list((zcli.cache / "zcli").glob("catalogue-*.json"))
    assert len(files) == 1
    # prove the cached copy is what zcli reads: doctor it and look for the change in help
    data = json.loads(files[0].read_text())
    for res in data["resources"]:
        if res["name"] == "Zone":
            res["summary"] = "DOCTORED SUMMARY"
    files[0].write_text(json.dumps(data))
    copies = list((zcli.cache / "zcli").glob("catalogue-*.marshal"))
    fast = [p for p in copies if not p.name.endswith(".queries.marshal")]
    assert len(fast) == 1  # the faster copy beside it (zcli/cache.py), made from the JSON
    assert len(copies) == 2  # and the read-only slice that `zone list` read
    fast[0].unlink()
    assert "DOCTORED SUMMARY" in (await zcli.ok("zone", "--help")).out
    assert fast[0].exists()  # written again, from the doctored JSON
    assert "DOCTORED SUMMARY" in (await zcli.ok("zone", "--help")).out


async def test_one_shot_commands_import_none_of_the_server_libraries(zcli: Zcli) -> None:
    """Issue 9: the CLI must not import the server's dependencies (msgspec, SQLAlchemy...),
    nor rich for a table printed to a pipe; the catalogue is fetched, then read from cache."""
    await zcli.ok("zone", "create", "z1")
    code = (
        "import io, sys\n"
        "from zcli.main import main\n"
        "for argv in (['-o', 'json', 'zone', 'list'], ['api', 'QueryZone', 'count=true'],\n"
        "             ['zone', 'list'], ['-o', 'value', '-c', 'name', 'zone', 'list']):\n"
        "    assert main(argv) == 0, argv\n"
        "heavy = ('msgspec', 'sqlalchemy', 'alembic', 'rich', 'yaml', 'typer', 'textual',\n"
        "         'prompt_toolkit', 'asyncio', 'ssl', 'pika', 'fabric')\n"
        "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "    or m.startswith(('zmn.core', 'zmn.server', 'zmn.services')))))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=zcli.env, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert '    "name": "z1",' in lines and "total  1" in lines and lines[-1] == "z1"
    assert err.decode() == "[]"


async def test_unreachable_node_exits_5(zcli: Zcli, tmp_path: Path) -> None:
    run = await zcli("zone", "list", env={"ZMN_ENDPOINT": f"unix:{tmp_path / 'none.sock'}"})
    assert run.rc == 5 and run.out == "" and "NODE.UNREACHABLE" in run.err
    run = await zcli("--endpoint", "tcp://127.0.0.1:1", "zone", "list")
    assert run.rc == 5
    assert (await zcli.ok("--version")).out.startswith("zcli ")


async def test_login_logout_and_an_expired_session(zcli: Zcli) -> None:
    if "LogInByAccount" not in (await zcli.ok("api", "--help")).out:
        pytest.skip("the identity service is not loaded")
    await zcli.ok("api", "CreateAccount", "name=alice", "password=secret-pass-1")
    login = await zcli.ok("login", "--account", "alice", "--password", "secret-pass-1")
    assert login.out == "" and "logged in as alice" in login.err
    path = zcli.config / "zcli" / "sessions.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    session = stored[zcli.env["ZMN_ENDPOINT"]]
    assert UUID.match(session)
    me = (await zcli.ok("-o", "json", "account", "list")).json()
    assert [a["name"] for a in me] == ["alice"]  # the stored session is sent: alice sees herself
    assert (await zcli.ok("logout")).err.strip() == "logged out"
    assert json.loads(path.read_text()) == {}
    bad = await zcli("login", "--account", "alice", "--password", "wrong-pass-1")
    assert bad.rc == 1 and "LOGIN_FAILED" in bad.err
    piped = await zcli.ok("-q", "login", "--account", "alice", stdin="secret-pass-1\n")
    assert UUID.match(piped.out.strip())

    # a session the node no longer knows counts as expired
    path.write_text(json.dumps({zcli.env["ZMN_ENDPOINT"]: "0" * 32}))
    run = await zcli("zone", "list")
    assert run.rc == 1 and run.out == "" and "session expired: zcli login" in run.err
    assert (await zcli.ok("logout")).rc == 0
    assert (await zcli.ok("zone", "list")).rc == 0  # back to the socket owner's admin rights


SCENARIO_APIS = (
    "CreateCluster",
    "AddSimulatorHost",
    "AddSimulatorPrimaryStorage",
    "AttachPrimaryStorageToCluster",
)


async def test_full_reference_scenario(zcli: Zcli) -> None:
    """Zone, cluster, host (a long API), primary storage, joins in queries, cascade rules."""
    apis = (await zcli.ok("api", "--help")).out
    missing = [a for a in SCENARIO_APIS if a not in apis]
    if missing:
        pytest.skip(f"services not loaded yet: {', '.join(missing)}")
    await zcli.ok("zone", "create", "z1")
    await zcli.ok("cluster", "create", "c1", "--zone-uuid", "z1", "--hypervisor-type", "Simulator")
    host = await zcli.ok(
        "-o",
        "json",
        "host",
        "add-simulator-host",
        "h1",
        "--management-ip",
        "10.0.0.1",
        "--cluster-uuid",
        "c1",
        "--cpu-capacity",
        "8",
        "--memory-capacity",
        str(8 << 30),
    )
    assert host.json()["name"] == "h1" and "AddSimulatorHost:" in host.err  # progress on stderr
    await zcli.ok(
        "ps", "add", "ps1", "--zone-uuid", "z1", "--url", "/ps1", "--total-capacity", str(1 << 40)
    )
    await zcli.ok("ps", "attach", "ps1", "--cluster-uuid", "c1")
    names = await zcli.ok(
        "-o", "value", "-c", "name", "host", "list", "cluster.name=c1", "zone.name=z1"
    )
    assert names.out == "h1\n"
    assert (await zcli.ok("-o", "json", "host", "list", "--count", "cluster.name=nope")).json() == {
        "total": 0
    }
    got = (await zcli.ok("-o", "json", "host", "get", "h1")).json()
    assert got["managementIp"] == "10.0.0.1"
    table = await zcli.ok("host", "list")
    assert table.out.splitlines()[0].split()[:2] == ["uuid", "name"]
    refused = await zcli("zone", "delete", "z1")
    assert refused.rc == 4 and refused.out == ""
    await zcli.ok("zone", "delete", "z1", "--cascade")
    assert (await zcli("host", "get", "h1")).rc == 3
