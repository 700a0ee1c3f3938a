"""DataSource: connect, catalogue, events, stale-since and reconnection with backoff."""

from __future__ import annotations

import asyncio

from tui.data import DataSource, Jobs, Status
from tui.testing import FakeNode


async def until(predicate, timeout: float = 3.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_connects_subscribes_and_hands_on_events() -> None:
    node = FakeNode.sample()
    data = DataSource("fake:", client_factory=node.client, backoff=(0.05, 0.2))
    seen: list[dict] = []
    data.on_event = seen.append
    task = asyncio.create_task(data.run())
    try:
        await until(lambda: data.status.live)
        assert data.catalogue is not None and "Host" in data.catalogue.resources
        assert ("Subscribe", {"paths": ["/**"]}) in node.calls
        node.create("Zone", "z9", state="Enabled")
        await until(lambda: seen)
        assert seen[0]["path"] == "/zone/created"
        assert data.names["Zone"][seen[0]["data"]["inventory"]["uuid"]] == "z9"
    finally:
        data.stop()
        await task


async def test_stale_since_the_drop_then_reconnects() -> None:
    node = FakeNode.sample()
    data = DataSource("fake:", client_factory=node.client, backoff=(0.05, 0.2))
    statuses: list[Status] = []
    data.on_status = statuses.append
    task = asyncio.create_task(data.run())
    try:
        await until(lambda: data.status.live)
        node.drop_connections()
        await until(lambda: data.status.state == "stale")
        since = data.status.stale_since
        assert since is not None and data.status.retry_at is not None
        await asyncio.sleep(0.3)  # failed attempts keep the original stale-since time
        assert data.status.state == "stale" and data.status.stale_since == since
        assert data.status.attempt >= 2
        node.up = True
        await until(lambda: data.status.live)
        assert data.status.stale_since is None
        assert [s.state for s in statuses][:2] == ["live", "stale"]
    finally:
        data.stop()
        await task


async def test_never_connected_is_connecting_not_stale() -> None:
    node = FakeNode.sample()
    node.up = False
    data = DataSource("fake:", client_factory=node.client, backoff=(0.05, 0.1))
    task = asyncio.create_task(data.run())
    try:
        await until(lambda: data.status.attempt >= 1)
        assert data.status.state == "connecting" and data.status.stale_since is None
        assert "cannot reach" in data.status.error
    finally:
        data.stop()
        await task


async def test_query_pages_and_name_cache() -> None:
    node = FakeNode.sample()
    data = DataSource("fake:", client_factory=node.client)
    task = asyncio.create_task(data.run())
    try:
        await until(lambda: data.status.live)
        page = await data.query("Host", ["state=Enabled"], limit=3, start=2, sort_by="name")
        assert [r["name"] for r in page.rows] == ["h121", "h122", "h211"]
        assert page.total == 8
        zone = next(iter(node.tables["Zone"].values()))
        assert await data.resolve_names("Zone", {zone["uuid"]}) == {zone["uuid"]: "z1"}
        assert await data.groups("Host", "status") == {"Connected": 4, "Disconnected": 4}
    finally:
        data.stop()
        await task


def test_jobs_track_progress_and_forget_finished_ones() -> None:
    jobs = Jobs()
    jobs.apply(
        "/job/j1", {"jobUuid": "j1", "name": "ReconnectHost", "progress": 40, "text": "ping"}
    )
    assert jobs.running == 1 and jobs.jobs["j1"]["progress"] == 40
    jobs.apply(
        "/job/state/change", {"jobUuid": "j1", "name": "ReconnectHost", "state": "Succeeded"}
    )
    assert jobs.running == 0 and jobs.visible()[0]["state"] == "Succeeded"
    assert jobs.visible(now=jobs.jobs["j1"]["seen"] + 60) == []
    assert not jobs.apply("/zone/created", {"inventory": {}})


async def test_a_socket_error_on_a_dead_connection_is_unavailable() -> None:
    import pytest

    from zmn.api.errors import Unavailable

    node = FakeNode.sample()
    data = DataSource("fake:", client_factory=node.client)
    task = asyncio.create_task(data.run())
    try:
        await until(lambda: data.status.live)
        assert data.client is not None

        async def broken(*_a, **_kw):
            raise ConnectionResetError("Connection lost")

        data.client.call = broken  # type: ignore[method-assign]
        with pytest.raises(Unavailable, match="lost the connection"):
            await data.query("Zone")
    finally:
        data.stop()
        await task


async def test_lost_events_make_every_screen_reload() -> None:
    node = FakeNode.sample()
    data = DataSource("fake:", client_factory=node.client, backoff=(0.05, 0.2))
    statuses: list[Status] = []
    seen: list[dict] = []
    data.on_event = seen.append
    task = asyncio.create_task(data.run())
    try:
        await until(lambda: data.status.live)
        data.on_status = statuses.append
        node.publish("/zmn/events/lost", {"lost": 12})
        await until(lambda: statuses)
        assert statuses[-1].live  # screens reload on a live status, as after a reconnect
        assert seen == []  # not an event to list
    finally:
        data.stop()
        await task
