"""zcli and long operations: progress on stderr, --no-wait, --timeout, Ctrl-C.

A test-only service adds ``NapZone``, a long API on zones that reports progress while it
sleeps, so these tests do not depend on how fast a real long operation is.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest

from tests.integration.test_zcli import ROOT, Zcli
from tests.support.inproc import Api, running_node
from zmn.api.message import ApiMessage, Doc, api
from zmn.core.flow import Flow, FlowContext
from zmn.core.resource import ResourceRegistry
from zmn.core.service import Call, Service, handler
from zmn.services.job.service import JobService
from zmn.services.management.service import ManagementService
from zmn.services.query.service import QueryService
from zmn.services.zone.service import ZoneService

UUID = re.compile(r"^[0-9a-f]{32}$")


@api(resource="Zone", verb="nap", long=True, admin=True)
class NapZone(ApiMessage, kw_only=True):
    """Sleep on a zone in steps, reporting progress (test only)."""

    uuid: Annotated[str, Doc("zone UUID or name")]
    seconds: Annotated[float, Doc("how long to sleep")] = 0.3
    steps: Annotated[int, Doc("progress events to send")] = 3
    held: Annotated[bool, Doc("after the first step, wait until the test releases the nap")] = False


@api(resource="Zone", verb="doze", long=True, admin=True)
class DozeZone(ApiMessage, kw_only=True):
    """Sleep on a zone through a flow chain of three naps (test only)."""

    uuid: Annotated[str, Doc("zone UUID or name")]
    seconds: Annotated[float, Doc("how long each step sleeps")] = 0.3


DOZED: list[str] = []
HOLD: dict[str, asyncio.Event] = {}  # step name -> the step waits for it after it starts


class Nap(Flow):
    async def run(self, ctx: FlowContext) -> None:
        DOZED.append(f"run {self.name}")
        gate = HOLD.get(self.name)
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(ctx.data["seconds"])

    async def rollback(self, ctx: FlowContext) -> None:
        DOZED.append(f"rollback {self.name}")


class Nap1(Nap):
    name = "nap-1"


class Nap2(Nap):
    name = "nap-2"


class Nap3(Nap):
    name = "nap-3"


class NapService(Service):
    name = "nap"

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.release = asyncio.Event()  # a held nap ends only when the test says so

    def declare(self, registry: ResourceRegistry) -> None:
        self.node.flows.add_chain("doze", [Nap1, Nap2, Nap3])

    @handler(DozeZone)
    async def doze(self, msg: DozeZone, call: Call) -> dict[str, Any]:
        ctx = FlowContext(call, data={"seconds": msg.seconds})
        await self.node.flows.chain("doze").run(ctx)
        return {"zoneUuid": msg.uuid}

    @handler(NapZone)
    async def nap(self, msg: NapZone, call: Call) -> dict[str, Any]:
        for step in range(msg.steps):
            await call.progress(int(100 * step / msg.steps), f"step {step + 1}")
            if msg.held:
                await self.release.wait()
            await asyncio.sleep(msg.seconds / msg.steps)
        return {"zoneUuid": msg.uuid, "slept": msg.seconds}


@pytest.fixture
async def zcli(tmp_path: Path) -> AsyncIterator[Zcli]:
    services = [ManagementService, QueryService, ZoneService, JobService, NapService]
    async with running_node(tmp_path / "home", services=services) as (node, server):
        await Api(node)("CreateZone", name="z1")
        yield Zcli(tmp_path, node, server)


async def test_long_api_waits_and_prints_progress_on_stderr(zcli: Zcli) -> None:
    run = await zcli.ok("-o", "json", "zone", "nap", "z1", "--seconds", "0.3")
    result = json.loads(run.out)
    assert result["slept"] == 0.3 and UUID.match(result["zoneUuid"])  # the name was resolved
    # stderr is not a terminal: plain progress lines, no carriage returns
    assert "NapZone: 0% step 1" in run.err and "NapZone: 66% step 3" in run.err
    assert "\r" not in run.err


async def test_quiet_asks_for_no_progress_and_prints_none(zcli: Zcli) -> None:
    run = await zcli.ok("-q", "zone", "nap", "z1", "--seconds", "0.3")
    assert run.out == ""  # the result names no resource: -q has no UUID to print
    assert run.err == ""  # no progress lines: -q (like incus's) means no progress at all


async def test_no_wait_prints_the_job_uuid(zcli: Zcli) -> None:
    run = await zcli.ok("--no-wait", "zone", "nap", "z1", "--seconds", "0.2")
    job = run.out.strip()
    assert UUID.match(job) and run.err == ""
    await asyncio.sleep(0.5)
    rows = await zcli.node.jobs.wait(job, 5)
    assert rows["state"] == "Succeeded" and rows["result"]["slept"] == 0.2


async def test_timeout_exits_124_and_names_the_job(zcli: Zcli) -> None:
    run = await zcli("--timeout", "0.5", "api", "NapZone", "uuid=z1", "seconds=2", "steps=20")
    assert run.rc == 124 and run.out == ""
    assert "error: CLIENT.TIMEOUT:" in run.err
    job = re.search(r"continues as job ([0-9a-f]{32})", run.err)
    assert job is not None
    final = await zcli.node.jobs.wait(job.group(1), 10)
    assert final["state"] == "Succeeded"  # the wait gave up, the job did not


async def test_ctrl_c_exits_130(zcli: Zcli) -> None:
    # the nap is held after its first step until the test releases it, so the signal always
    # lands while zcli waits (a timed nap could end first on a loaded machine)
    nap: Any = zcli.node.services["nap"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zcli.main",
        "api",
        "NapZone",
        "uuid=z1",
        "seconds=0.1",
        "steps=2",
        "held=true",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=zcli.env,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 30)  # the first progress line
        assert b"NapZone" in line
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        nap.release.set()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130 and out == b""
    job = re.search(rb"interrupted: it continues as job ([0-9a-f]{32})", err)
    assert job is not None, err
    assert b"zcli job wait " + job.group(1) in err
    final = await zcli.node.jobs.wait(job.group(1).decode(), 10)
    assert final["state"] == "Succeeded"  # the client stopped waiting, the job did not


async def test_job_wait_takes_several_jobs_and_q_prints_their_resources(zcli: Zcli) -> None:
    zone = (await zcli.ok("-q", "zone", "get", "z1")).out.strip()
    jobs = []
    for seconds in ("0.3", "0.1"):
        run = await zcli.ok("--no-wait", "zone", "nap", "z1", "--seconds", seconds)
        jobs.append(run.out.strip())
    run = await zcli.ok("-q", "job", "wait", *jobs)
    assert run.out == f"{zone}\n{zone}\n"  # the resource of each job, in the order given
    run = await zcli.ok("-o", "json", "job", "wait", *jobs)
    rows = json.loads(run.out)
    assert [r["uuid"] for r in rows] == jobs and {r["state"] for r in rows} == {"Succeeded"}
    one = json.loads((await zcli.ok("-o", "json", "job", "wait", jobs[0])).out)
    assert one["uuid"] == jobs[0]  # one job prints as one object, as before
    missing = await zcli("job", "wait", jobs[1], "0" * 32)
    assert missing.rc == 3 and "NOT_FOUND" in missing.err  # the worst status wins
    assert (await zcli("job", "wait")).rc == 2


async def test_job_cancel_rolls_the_flow_back(zcli: Zcli) -> None:
    DOZED.clear()
    HOLD["nap-1"] = gate = asyncio.Event()  # the first step runs until the cancel is in
    try:
        job = (await zcli.ok("--no-wait", "zone", "doze", "z1", "--seconds", "0")).out.strip()
        deadline = time.monotonic() + 60
        while DOZED != ["run nap-1"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert DOZED == ["run nap-1"]
        run = await zcli.ok("-o", "json", "job", "cancel", job)
    finally:
        gate.set()
        HOLD.clear()
    assert json.loads(run.out)["cancelRequested"] is True
    waited = await zcli("job", "wait", job)
    assert waited.rc == 1 and "error: JOB.CANCELED:" in waited.err and job in waited.err
    assert "Canceled" in waited.out
    assert DOZED == ["run nap-1", "rollback nap-1"]
    again = await zcli("job", "cancel", job)
    assert again.rc == 4 and "JOB.NOT_RUNNING" in again.err
