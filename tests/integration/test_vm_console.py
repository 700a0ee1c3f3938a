"""The serial console through the management node: a real node with its API socket, KVM
hosts whose agents run in-process with the fake driver, and clients on the wire (the
blocking client, and ``zcli vm console`` in a pseudo-terminal)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest
from sqlalchemy import text

from tests.support import kvmagents
from tests.support.kvmagents import Env, build_kvm_cloud
from zcli.console import attach
from zmn.api.errors import ZmnError
from zmn.client import Client

env = kvmagents.env  # the fixture: a node with in-process KVM agents (fake driver)


async def make_vm(env: Env, name: str = "vm1") -> dict[str, Any]:
    u = await build_kvm_cloud(env)
    reply = await env.api(
        "CreateVmInstance", name=name, imageUuid=u["image"], instanceOfferingUuid=u["offering"],
        l3NetworkUuids=[u["l3"]],
    )  # fmt: skip
    return dict(reply["inventory"])


def endpoint(env: Env) -> str:
    return f"unix:{env.node.config.unix_path}"


def read_stream_until(client: Client, stream: str, marker: bytes) -> tuple[bytes, dict[str, Any]]:
    got = b""
    while True:
        frame = client.read_frame()
        assert frame is not None
        if frame.get("type") != "stream" or frame.get("stream") != stream:
            continue
        got += base64.b64decode(frame.get("data") or "")
        if marker in got or frame.get("end"):
            return got, frame


async def test_attach_type_detach_and_a_second_attach(env: Env) -> None:
    vm = await make_vm(env)

    def session() -> None:
        with Client(endpoint(env)) as first, Client(endpoint(env)) as second:
            reply = first.open_stream("OpenVmConsole", {"uuid": "vm1"})
            sid = reply["stream"]
            assert reply["result"]["vmInstanceUuid"] == vm["uuid"]
            got, _ = read_stream_until(first, sid, b"login: ")
            assert b"Fake guest vm1 on ttyS0" in got
            first.send_stream(sid, b"echo typed-through-the-node\r")
            got, _ = read_stream_until(first, sid, b"\r\n# ")
            assert b"typed-through-the-node\r\n# " in got
            with pytest.raises(ZmnError) as busy:
                second.open_stream("OpenVmConsole", {"uuid": vm["uuid"]})
            assert busy.value.code == "VM_INSTANCE.CONSOLE_BUSY"
            taken = second.open_stream("OpenVmConsole", {"uuid": vm["uuid"], "force": True})
            _, end = read_stream_until(first, sid, b"\0never\0")
            assert end.get("end") and "closed" in end["reason"]
            read_stream_until(second, taken["stream"], b"login: ")
            second.end_stream(taken["stream"])

    await asyncio.to_thread(session)
    with env.node.db.tx() as s:
        rows = s.execute(
            text(
                "SELECT apiName, resourceUuid, result, peer FROM audit_log"
                " WHERE apiName='OpenVmConsole' ORDER BY id"
            )
        ).all()
    # each attach was authorised and recorded: who (the peer), which VM, and whether the
    # console opened (the agent refused the second: busy)
    assert len(rows) == 3
    assert all(r.resourceUuid == vm["uuid"] and r.peer.startswith("unix:") for r in rows)
    assert [r.result for r in rows] == ["ok", "VM_INSTANCE.CONSOLE_BUSY", "ok"]


async def test_console_of_a_stopped_vm_a_simulator_vm_and_another_account(env: Env) -> None:
    vm = await make_vm(env)
    await env.api("CreateAccount", name="eve", password="eve-password")
    login = await env.api("LogInByAccount", accountName="eve", password="eve-password")
    eve = login["inventory"]["uuid"]

    def refused() -> dict[str, str]:
        out = {}
        with Client(endpoint(env), session=eve) as c:
            for api, args in (
                ("OpenVmConsole", {"uuid": vm["uuid"]}),
                ("RequestConsoleAccess", {"vmInstanceUuid": vm["uuid"]}),
            ):
                try:
                    c.open_stream(api, args) if api == "OpenVmConsole" else c.call(api, args)
                except ZmnError as exc:
                    out[api] = exc.code
        return out

    assert await asyncio.to_thread(refused) == {
        "OpenVmConsole": "VM_INSTANCE.NOT_FOUND",
        "RequestConsoleAccess": "VM_INSTANCE.NOT_FOUND",
    }
    await env.api("StopVmInstance", uuid=vm["uuid"])
    with pytest.raises(ZmnError) as stopped:
        await env.api("OpenVmConsole", uuid=vm["uuid"])
    assert stopped.value.code == "VM_INSTANCE.NOT_RUNNING"
    assert "start it first" in stopped.value.message


async def test_request_console_access_gives_the_hosts_address_and_a_password(env: Env) -> None:
    vm = await make_vm(env)
    with pytest.raises(ZmnError) as none:
        await env.api("RequestConsoleAccess", vmInstanceUuid=vm["uuid"])
    assert none.value.code == "VM_INSTANCE.NO_GRAPHICS"
    await env.api("UpdateGlobalConfig", category="kvm", name="vm.graphics", value="vnc")
    await env.api("RebootVmInstance", uuid=vm["uuid"])  # the domain keeps its definition
    await env.api("StopVmInstance", uuid=vm["uuid"])
    await env.api("StartVmInstance", uuid=vm["uuid"])
    first = (await env.api("RequestConsoleAccess", vmInstanceUuid="vm1"))["inventory"]
    assert first["scheme"] == "vnc" and first["hostname"] == "127.0.0.2"
    assert first["port"] == 5900 and len(first["password"]) == 8
    await env.api("StopVmInstance", uuid=vm["uuid"])
    await env.api("StartVmInstance", uuid=vm["uuid"])
    again = (await env.api("RequestConsoleAccess", vmInstanceUuid="vm1"))["inventory"]
    assert again["password"] != first["password"]  # a new one at every start
    with env.node.db.tx() as s:
        args = (
            s.execute(text("SELECT args FROM audit_log WHERE apiName='RequestConsoleAccess'"))
            .scalars()
            .all()
        )
    assert args and all(first["password"] not in a for a in args)
    assert json.loads(args[0]) == {"vmInstanceUuid": vm["uuid"]}


async def test_zcli_vm_console_in_a_pseudo_terminal(env: Env, tmp_path: Path) -> None:
    await make_vm(env, "tty-vm")
    zcli = str(Path(sys.executable).with_name("zcli"))
    envvars = {**os.environ, "ZMN_ENDPOINT": endpoint(env), "ZMN_HOME": str(tmp_path / "zh")}

    def drive() -> int:
        child = pexpect.spawn(zcli, ["vm", "console", "tty-vm"], env=envvars, timeout=20)
        try:
            child.expect("Escape character is")
            child.expect("login: ")
            child.send("echo from-the-pty\r")
            child.expect("from-the-pty\r\n# ")
            child.sendcontrol("]")
            child.expect("detached")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        return int(child.exitstatus if child.exitstatus is not None else -1)

    assert await asyncio.to_thread(drive) == 0


async def test_attach_with_pipes_detaches_at_ctrl_bracket(env: Env) -> None:
    await make_vm(env)
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    err = io.StringIO()

    def run() -> int:
        with Client(endpoint(env)) as c:
            return attach(c, "vm1", in_fd=r_in, out_fd=w_out, err=err)

    task = asyncio.create_task(asyncio.to_thread(run))
    out = b""
    deadline = time.monotonic() + 10
    while b"login: " not in out and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        os.set_blocking(r_out, False)
        try:
            out += os.read(r_out, 4096)
        except BlockingIOError:
            pass
    assert b"login: " in out
    os.write(w_in, b"echo piped\r")
    await asyncio.sleep(0.3)
    os.write(w_in, b"\x1d")
    assert await asyncio.wait_for(task, 10) == 0
    try:
        out += os.read(r_out, 65536)
    except BlockingIOError:
        pass
    assert b"piped\r\n# " in out and "detached" in err.getvalue()
    for fd in (r_in, w_in, r_out, w_out):
        os.close(fd)
