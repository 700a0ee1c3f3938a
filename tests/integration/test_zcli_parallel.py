"""``zcli -f FILE --parallel N``: lines in flight on one connection, output in line order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_zcli import Zcli
from tests.support.inproc import running_node


@pytest.fixture
async def zcli(tmp_path: Path) -> AsyncIterator[Zcli]:
    async with running_node(tmp_path / "home") as (node, server):
        yield Zcli(tmp_path, node, server)


async def test_output_in_line_order_on_one_connection(zcli: Zcli) -> None:
    connections = 0
    serve = zcli.server._serve

    async def counting(*args: Any) -> None:
        nonlocal connections
        connections += 1
        await serve(*args)

    zcli.server._serve = counting  # type: ignore[method-assign]
    script = "".join(f"-o value -c name zone create z{i}\n" for i in range(40))
    script += "# a comment\n\n-o value -c name zone get z7\n"
    run = await zcli.ok("--parallel", "8", "-f", "-", stdin=script)
    assert run.out == "".join(f"z{i}\n" for i in range(40)) + "z7\n"
    assert run.err == "" and connections == 1


async def test_stops_after_a_failure_and_exits_with_its_status(zcli: Zcli) -> None:
    script = "zone create a0\nzone get nowhere\n" + "".join(
        f"zone create a{i}\n" for i in range(1, 40)
    )
    run = await zcli("--parallel", "2", "-f", "-", stdin=script)
    assert run.rc == 3 and "ZONE.NOT_FOUND" in run.err and "at line 2: zone get nowhere" in run.err
    names = (await zcli.ok("-o", "value", "-c", "name", "zone", "list")).out.split()
    assert "a0" in names and "a39" not in names and len(names) <= 4  # at most the window ran


async def test_continue_on_error_runs_every_line_and_exits_with_the_worst(zcli: Zcli) -> None:
    script = (
        "-o value -c name zone create b1\n"
        "zone create --nmae b2\n"  # 2: usage
        "zone create b0\n"  # 4: conflict (lines in flight are not ordered against each other)
        "zone get nowhere\n"  # 3: not found
        "-o value -c name zone create b5\n"
        "'unclosed\n"  # 2: cannot split
        "-o value -c name zone get b0\n"
    )
    await zcli.ok("zone", "create", "b0")
    run = await zcli("--continue-on-error", "--parallel", "4", "-f", "-", stdin=script)
    assert run.rc == 4
    assert run.out == "b1\nb5\nb0\n"
    at = [line for line in run.err.splitlines() if line.startswith("at line")]
    assert [a.split(":")[0] for a in at] == ["at line 2", "at line 3", "at line 4", "at line 6"]
    assert "ZONE.DUPLICATE_NAME" in run.err and "cannot split" in run.err


async def test_login_runs_alone_and_later_lines_use_its_session(zcli: Zcli) -> None:
    await zcli.ok("api", "CreateAccount", "name=alice", "password=secret-pass-1")
    script = (
        "-o value -c name account list\n"
        "login --account alice --password secret-pass-1\n"
        "-o value -c name account list\n-o value -c name account list\n"
    )
    run = await zcli.ok("--parallel", "4", "-f", "-", stdin=script)
    lines = run.out.splitlines()
    assert sorted(lines[:2]) == ["admin", "alice"]  # before the login: every account
    assert lines[-2:] == ["alice", "alice"]  # after it: alice sees herself only
    assert "logged in as alice" in run.err


async def test_bad_parallel_values_name_the_field(zcli: Zcli) -> None:
    for value in ("0", "x", "65", "-1"):
        run = await zcli("--parallel", value, "-f", "-", stdin="zone list\n")
        assert run.rc == 2 and "field: parallel" in run.err, (value, run.err)
    run = await zcli("--parallel", "2", "zone", "list")
    assert run.rc == 2 and "needs a batch" in run.err
    run = await zcli("-f", "-", stdin="--parallel 2 zone list\n")
    assert run.rc == 2 and "cannot be used on a batch line" in run.err
