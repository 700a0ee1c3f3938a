"""The node's kept-alive connections to agents (``AgentPool`` behind ``AgentClient``), against
a scripted HTTP/1.1 server standing in for zagent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from zmn.api.errors import Timeout, Unavailable
from zmn.services.kvm.agentclient import AgentClient
from zmn.services.kvm.agentpool import AgentPool

SECRET = "k" * 40


@dataclass
class FakeAgent:
    """Answers ``{"n": <request number>}``; ``drop`` holds request numbers it reads and then
    closes the connection on without answering, ``slow`` ones it answers after 1 s."""

    connections: int = 0
    requests: list[tuple[int, str, str]] = field(default_factory=list)  # (conn, method, path)
    drop: set[int] = field(default_factory=set)
    slow: set[int] = field(default_factory=set)
    close_after: set[int] = field(default_factory=set)  # answered with Connection: close
    hang_up: set[int] = field(default_factory=set)  # answered, then closed anyway
    open: int = 0
    server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self.open += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests.append((conn, method, path))
                n = len(self.requests)
                if n in self.drop:
                    return
                if n in self.slow:
                    await asyncio.sleep(1)
                body = json.dumps({"n": n}).encode()
                close = n in self.close_after
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n".encode()
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\n"
                    + body
                )
                await writer.drain()
                if close or n in self.hang_up:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open -= 1
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def agent() -> AsyncIterator[FakeAgent]:
    fake = FakeAgent()
    fake.server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    try:
        yield fake
    finally:
        fake.server.close()
        await fake.server.wait_closed()


@pytest.fixture
def pool() -> Iterator[AgentPool]:
    p = AgentPool(per_host=2)
    yield p
    p.close()


def client(agent: FakeAgent, pool: AgentPool | None, timeout: float = 5.0) -> AgentClient:
    return AgentClient("127.0.0.1", agent.port, SECRET, timeout=timeout, pool=pool)


async def until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_requests_in_a_row_share_one_connection(agent: FakeAgent, pool: AgentPool) -> None:
    c = client(agent, pool)
    answers = [await c.post("/v1/network/vm", {"i": i}) for i in range(3)]
    answers.append(await c.get("/v1/vm/list"))
    assert [a["n"] for a in answers] == [1, 2, 3, 4]
    assert agent.connections == 1 and {conn for conn, _m, _p in agent.requests} == {1}
    assert (pool.opened, pool.reused) == (1, 3)


async def test_clients_of_one_host_share_the_pool(agent: FakeAgent, pool: AgentPool) -> None:
    await client(agent, pool).get("/v1/ping")
    await client(agent, pool).get("/v1/ping")  # a new AgentClient, as ht.client() makes
    assert agent.connections == 1


async def test_without_a_pool_each_request_has_its_own_connection(agent: FakeAgent) -> None:
    c = client(agent, None)
    await c.get("/v1/ping")
    await c.get("/v1/ping")
    assert agent.connections == 2
    await until(lambda: agent.open == 0, "the agent saw both closed")


async def test_a_burst_keeps_at_most_per_host_idle(agent: FakeAgent, pool: AgentPool) -> None:
    agent.slow = {1, 2, 3, 4, 5}  # all five are in flight at once
    c = client(agent, pool)
    await asyncio.gather(*(c.get("/v1/ping") for _ in range(5)))
    assert agent.connections == 5
    assert pool.idle_count("127.0.0.1", agent.port) == 2
    await until(lambda: agent.open == 2, "the three beyond per_host closed")


async def test_a_get_is_sent_again_when_its_kept_connection_was_dropped(
    agent: FakeAgent, pool: AgentPool
) -> None:
    c = client(agent, pool)
    await c.get("/v1/ping")
    agent.drop = {2}  # the agent reads the next request and closes without an answer
    assert (await c.get("/v1/vm/list"))["n"] == 3
    assert [(conn, p) for conn, _m, p in agent.requests] == [
        (1, "/v1/ping"), (1, "/v1/vm/list"), (2, "/v1/vm/list")
    ]  # fmt: skip


async def test_a_post_is_never_sent_twice(agent: FakeAgent, pool: AgentPool) -> None:
    c = client(agent, pool)
    await c.get("/v1/ping")
    agent.drop = {2}
    with pytest.raises(Unavailable) as err:
        await c.post("/v1/vm/start", {"vm": {}})
    assert err.value.code == "KVM.AGENT_UNREACHABLE" and err.value.retryable
    assert [p for _c, _m, p in agent.requests] == ["/v1/ping", "/v1/vm/start"]
    assert (await c.post("/v1/vm/start", {"vm": {}}))["n"] == 3  # a new connection works


async def test_a_post_that_says_it_is_idempotent_is_sent_again(
    agent: FakeAgent, pool: AgentPool
) -> None:
    c = client(agent, pool)
    await c.get("/v1/ping")
    agent.drop = {2}
    assert (await c.post("/v1/network/bridge", {}, idempotent=True))["n"] == 3


async def test_a_drop_on_a_new_connection_is_not_retried(agent: FakeAgent, pool: AgentPool) -> None:
    agent.drop = {1}
    with pytest.raises(Unavailable):
        await client(agent, pool).get("/v1/ping")
    assert len(agent.requests) == 1


async def test_a_connection_the_agent_closed_while_kept_is_not_used(
    agent: FakeAgent, pool: AgentPool
) -> None:
    agent.hang_up = {1}  # answered as kept-alive, then closed (the agent's idle limit)
    c = client(agent, pool)
    await c.get("/v1/ping")
    await until(lambda: all(k.reader.at_eof() for v in pool._idle.values() for k in v), "EOF seen")
    assert (await c.post("/v1/vm/start", {}))["n"] == 2  # a POST, on a new connection
    assert agent.connections == 2 and pool.reused == 0


async def test_an_answer_with_connection_close_is_not_kept(
    agent: FakeAgent, pool: AgentPool
) -> None:
    agent.close_after = {1}
    c = client(agent, pool)
    await c.get("/v1/ping")
    assert pool.idle_count("127.0.0.1", agent.port) == 0
    await c.get("/v1/ping")
    assert agent.connections == 2


async def test_a_timed_out_request_leaves_no_connection_behind(
    agent: FakeAgent, pool: AgentPool
) -> None:
    agent.slow = {1}
    with pytest.raises(Timeout):
        await client(agent, pool, timeout=0.2).get("/v1/ping")
    assert pool.idle_count("127.0.0.1", agent.port) == 0
    assert (await client(agent, pool).get("/v1/ping"))["n"] == 2  # its late answer is not read
    assert agent.connections == 2


async def test_an_idle_connection_expires(agent: FakeAgent) -> None:
    pool = AgentPool(idle=0.0)
    try:
        c = client(agent, pool)
        await c.get("/v1/ping")
        await c.get("/v1/ping")
        assert agent.connections == 2 and pool.reused == 0
    finally:
        pool.close()


async def test_drop_closes_the_kept_connections_of_a_host(
    agent: FakeAgent, pool: AgentPool
) -> None:
    await client(agent, pool).get("/v1/ping")
    pool.drop("127.0.0.1")
    assert pool.idle_count("127.0.0.1", agent.port) == 0
    await until(lambda: agent.open == 0, "the agent saw it closed")
