"""``zcli shell`` driven in a real pseudo-terminal (pexpect) against a real in-process node.

The node serves from its own thread and event loop, so that the test can block on the
terminal while the node answers the shell.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support.inproc import running_node
from zmn.api.ids import short_id

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UUID = re.compile(r"[0-9a-f]{32}")


class NodeThread:
    """A node (every entry-point service) served by a thread of its own."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-node", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by __enter__
            self.failure = exc
            self.ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        async with running_node(self.home):
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> NodeThread:
        self.thread.start()
        if not self.ready.wait(60) or self.failure is not None:
            raise RuntimeError(f"the node did not start: {self.failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


@dataclass
class Cloud:
    env: dict[str, str]
    state: Path

    def zcli(self, *args: str) -> Any:
        proc = subprocess.run(
            [str(BIN / "zcli"), "-o", "json", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def shell(self, *args: str) -> pexpect.spawn:
        child = pexpect.spawn(
            str(BIN / "zcli"),
            list(args),
            env=self.env,
            cwd=str(ROOT),
            dimensions=(40, 200),
            encoding="utf-8",
            timeout=20,
        )
        child.delaybeforesend = 0.02
        return child


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """A node holding the reference cloud of demo/cloud.zcli."""
    tmp = tmp_path_factory.mktemp("shell")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_"))}
    env.update(
        ZMN_ENDPOINT=f"unix:{tmp / 'home' / 'zmn.sock'}",
        XDG_CONFIG_HOME=str(tmp / "config"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        XDG_STATE_HOME=str(tmp / "state"),
        TERM="xterm",
        PROMPT_TOOLKIT_NO_CPR="1",
        NO_COLOR="1",
        PYTHONPATH=str(ROOT),
    )
    with NodeThread(tmp / "home"):
        built = subprocess.run(
            [str(BIN / "zcli"), "-f", "demo/cloud.zcli"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert built.returncode == 0, built.stderr
        yield Cloud(env, tmp / "state")


PROMPT = re.compile(r"admin@[\w-]+>")  # short: the full endpoint is in "status"
# Patterns below match a command's output, never the echo of the typed line: a key sent
# while a command runs reaches a terminal in cooked mode, where Ctrl-D is not a key.
TABLE = re.compile(r"name\s+id\s+state")  # the table for people on a terminal
ZONE_ROW = re.compile(r"name\s+id\b[^\r\n]*\r?\nz1\s+[0-9a-f]{8}\b")  # z1 in such a table


def test_join_field_completes_and_live_zone_uuid_is_offered(cloud: Cloud) -> None:
    zone = cloud.zcli("zone", "get", "z1")
    child = cloud.shell("shell")
    try:
        child.expect(PROMPT)
        # QueryHost cluster.zone.na<Tab> -> cluster.zone.name; then run it
        child.send("QueryHost cluster.zone.na")
        time.sleep(0.3)
        child.send("\t")
        time.sleep(0.3)
        child.send("=z1\r")
        child.expect(r"(?s)\bh[123]\b.*\bh[123]\b.*\bh[123]\b")  # the hosts of z1
        assert set(re.findall(r"\bh[123]\b", child.after)) == {"h1", "h2", "h3"}
        child.expect(PROMPT)
        # a UUID parameter offers the live zones as "name (short uuid)"; Tab inserts the name
        child.send("CreateCluster name=cx zoneUuid=")
        child.expect(re.escape(f"z1 ({short_id(zone['uuid'])})"))
        child.send("\t")
        time.sleep(0.3)
        child.send(" hypervisorType=Simulator\r")
        child.expect(r"hypervisorType\s+Simulator")
        child.expect(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    created = cloud.zcli("cluster", "get", "cx")
    assert created["zoneUuid"] == zone["uuid"]


def test_bare_zcli_on_a_terminal_is_the_shell(cloud: Cloud) -> None:
    child = cloud.shell()
    try:
        child.expect(PROMPT)
        # help <ApiName> from the catalogue
        child.send("help CreateZone\r")
        child.expect("CreateZone: Create a zone")
        child.expect(PROMPT)
        # a line ending in a backslash continues on the next
        child.send("QueryZone \\\r")
        time.sleep(0.2)
        child.send("name=z1\r")
        child.expect(r"Enabled")
        child.expect(PROMPT)
        # Ctrl-C drops the line without running it
        child.send("zone delete z1 --cascade")
        time.sleep(0.2)
        child.sendcontrol("c")
        child.expect(PROMPT)
        child.send("zone list\r")
        child.expect(TABLE)
        child.expect(PROMPT)
        # a secret goes to the node but not to the history
        child.send("api CreateAccount name=shelltest password=Hunter2-secret\r")
        child.expect(r"name\s+shelltest")
        child.expect(PROMPT)
        child.send("exit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert cloud.zcli("zone", "get", "z1")["name"] == "z1"  # Ctrl-C ran nothing
    history = (cloud.state / "zcli" / "history").read_text()
    assert "Hunter2-secret" not in history
    assert "password=***" in history and "QueryZone" in history


def test_errors_keep_the_shell_running(cloud: Cloud) -> None:
    child = cloud.shell("shell")
    try:
        child.expect(PROMPT)
        child.send("QueryHost nosuch=1\r")
        child.expect("error: QUERY")
        child.expect(PROMPT)
        child.send("QueryZone name=z1\r")
        child.expect(TABLE)
        child.expect(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_complete_callback_fetches_then_refreshes_names_in_the_background(
    cloud: Cloud, tmp_path: Path
) -> None:
    """``zcli __complete`` against the live node: the first Tab fetches a type's names;
    stale names answer at once and are refreshed by a detached child."""
    zone = cloud.zcli("zone", "get", "z1")
    env = {**cloud.env, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def complete(*words: str) -> list[str]:
        proc = subprocess.run(
            [str(BIN / "zcli"), "__complete", "--", *words],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return proc.stdout.splitlines()

    short = short_id(zone["uuid"])
    assert complete("api", "CreateCluster", "zoneUuid=") == [f"zoneUuid=z1\tZone {short}"]
    # make the cached names stale and wrong: the next answer is the cache, then it heals
    files = list((tmp_path / "cache" / "zcli").glob("names-*.json"))
    assert len(files) == 1
    state = json.loads(files[0].read_text())
    state["types"]["Zone"] = {"at": 0, "rows": [["f" * 32, "old"]]}
    files[0].write_text(json.dumps(state))
    assert complete("zone", "get", "") == [f"old\tZone {'f' * 8}"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = json.loads(files[0].read_text())["types"]["Zone"]["rows"]
        if rows == [[zone["uuid"], "z1"]]:
            break
        time.sleep(0.1)
    assert complete("zone", "get", "") == [f"z1\tZone {short}"]


def test_shell_reads_a_pipe_and_returns_the_first_failure(cloud: Cloud) -> None:
    lines = "QueryZone name=nosuch-zone count=true\nQueryHost nosuch=1\n-o json zone \\\n get z1\n"
    proc = subprocess.run(
        [str(BIN / "zcli"), "shell"],
        input=lines, env=cloud.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # the unknown field, a usage error
    assert "total" in proc.stdout and "z1" in proc.stdout  # every line ran
    assert "QUERY.UNKNOWN_FIELD" in proc.stderr


def test_ctrl_r_then_enter_runs_the_found_line(cloud: Cloud) -> None:
    child = cloud.shell("shell")
    try:
        child.expect(PROMPT)
        child.send("QueryZone name=z1 fields=uuid,name\r")
        child.expect(ZONE_ROW)  # a table for people: name first, then the short id
        child.expect(PROMPT)
        child.send("QueryHost count=true\r")
        child.expect(r"\d+\r?\n")  # the count; the digits of an escape sequence end in a letter
        child.expect(PROMPT)
        child.sendcontrol("r")
        time.sleep(0.2)
        child.send("fields=uuid")
        time.sleep(0.3)
        child.send("\r")  # runs the line found, not just the end of the search
        child.expect(ZONE_ROW)
        child.expect(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_set_output_for_the_session_and_status(cloud: Cloud) -> None:
    child = cloud.shell("shell")
    try:
        child.expect(PROMPT)
        child.send("set output json\r")
        child.expect("output=json")
        child.expect(PROMPT)
        child.send("zone get z1\r")
        child.expect(r'"name": "z1"')  # JSON now, without -o on the line
        child.expect(PROMPT)
        child.send("-o table zone get z1\r")  # a line's own option still wins
        child.expect(r"name\s+z1")
        child.expect(PROMPT)
        child.send("set output yml\r")
        child.expect("error: CLI.USAGE: --output: unknown output 'yml'")
        child.expect(PROMPT)
        child.send("status\r")
        child.expect(r"endpoint\s+unix:\S*zmn\.sock")
        child.expect(r"account\s+admin")
        child.expect(r"options\s+output=json")
        child.expect(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
