"""The agent's console stream end to end in one process: a real AgentServer with the fake
driver, opened by the node's own AgentClient (signed request, ``101``, raw bytes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.testing import TEST_SECRET, running_agent
from tests.integration.test_agent_server import VM, vm_spec
from zmn.api.errors import ZmnError
from zmn.services.kvm.agentclient import AgentClient


async def read_until(reader: asyncio.StreamReader, marker: bytes, timeout: float = 5) -> bytes:
    got = b""
    async with asyncio.timeout(timeout):
        while marker not in got:
            chunk = await reader.read(4096)
            if not chunk:
                raise AssertionError(f"stream ended before {marker!r}; got {got!r}")
            got += chunk
    return got


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def test_console_attach_type_detach_busy_force_and_stop(tmp_path: Path) -> None:
    with running_agent(tmp_path) as (server, client):
        status, _ = client.post("/v1/vm/start", {"vm": vm_spec()})
        assert status == 200
        node_side = AgentClient(*server.address, TEST_SECRET)
        reader, writer = await node_side.open_stream("/v1/vm/console", {"uuid": VM})
        assert b"Fake guest web-1 on ttyS0" in await read_until(reader, b"login: ")
        writer.write(b"echo hello-console\r")
        assert b"hello-console\r\n# " in await read_until(reader, b"\r\n# ")

        with pytest.raises(ZmnError) as busy:
            await node_side.open_stream("/v1/vm/console", {"uuid": VM})
        assert busy.value.code == "VM_INSTANCE.CONSOLE_BUSY" and busy.value.kind == "Conflict"

        r2, w2 = await node_side.open_stream("/v1/vm/console", {"uuid": VM, "force": True})
        async with asyncio.timeout(5):  # the first session is closed by the takeover
            while await reader.read(4096):
                pass
        await close(writer)
        await read_until(r2, b"login: ")

        # detaching (closing the connection) frees the console for the next attach
        await close(w2)
        for _ in range(50):
            try:
                r3, w3 = await node_side.open_stream("/v1/vm/console", {"uuid": VM})
                break
            except ZmnError as exc:
                assert exc.code == "VM_INSTANCE.CONSOLE_BUSY"
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the console stayed busy after the detach")
        await read_until(r3, b"login: ")

        # the VM stops: the console ends
        status, _ = client.post("/v1/vm/stop", {"uuid": VM, "force": True})
        assert status == 200
        async with asyncio.timeout(5):
            while await r3.read(4096):
                pass
        await close(w3)

        with pytest.raises(ZmnError) as stopped:
            await node_side.open_stream("/v1/vm/console", {"uuid": VM})
        assert stopped.value.code == "VM_INSTANCE.INVALID_STATE"


async def test_console_needs_a_valid_signature_and_uuid(tmp_path: Path) -> None:
    with running_agent(tmp_path) as (server, _client):
        forged = AgentClient(*server.address, b"x" * 40)
        with pytest.raises(ZmnError) as refused:
            await forged.open_stream("/v1/vm/console", {"uuid": VM})
        assert refused.value.kind == "PermissionDenied"
        node_side = AgentClient(*server.address, TEST_SECRET)
        with pytest.raises(ZmnError) as bad:
            await node_side.open_stream("/v1/vm/console", {"uuid": "nope"})
        assert bad.value.kind == "InvalidArgument"
        with pytest.raises(ZmnError) as missing:
            await node_side.open_stream("/v1/vm/console", {"uuid": "f" * 32})
        assert missing.value.kind == "NotFound"


async def test_graphics_answers_address_port_password(tmp_path: Path) -> None:
    spec = vm_spec(consoleMode="vnc", consoleListen="127.0.0.1", consolePassword="k3Xp9qTz")
    with running_agent(tmp_path) as (_server, client):
        client.post("/v1/vm/start", {"vm": spec})
        status, body = client.post("/v1/vm/graphics", {"uuid": VM})
        assert status == 200, body
        assert body == {"uuid": VM, "type": "vnc", "host": "127.0.0.1", "port": 5900,
                        "password": "k3Xp9qTz"}  # fmt: skip
        client.post("/v1/vm/start", {"vm": vm_spec(uuid="e" * 32)})
        status, body = client.post("/v1/vm/graphics", {"uuid": "e" * 32})
        assert status == 404 and body["error"]["code"] == "VM_INSTANCE.NO_GRAPHICS"
