"""Global config changes reach the loops that sleep on them at once (issue: hold under abuse,
item 10): a new ``host/ping.interval`` used to wait for the old sleep to end, up to a minute.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.support.inproc import Api, running_node
from zmn.core.globalconfig import GlobalConfigDef, GlobalConfigStore


async def _until(what: str, check: object, timeout: float) -> float:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_shorter_ping_interval_starts_pinging_at_once(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        tracker = node.services["host"].tracker  # type: ignore[attr-defined]
        await _until("the boot round", lambda: tracker.boot_summary, 10)
        await asyncio.sleep(0.2)  # the loop is in its first 60 s sleep now
        assert tracker.rounds == 0

        await api("UpdateGlobalConfig", category="host", name="ping.interval", value="1")
        # the old sleep had 60 s to go; the new interval counts from its start
        took = await _until("a ping round", lambda: tracker.rounds >= 1, 5)
        assert took < 3
        await _until("the next round a second later", lambda: tracker.rounds >= 2, 5)


async def test_the_reconciler_follows_its_interval_and_being_turned_on(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        reconciler = node.services["vm"].reconciler  # type: ignore[attr-defined]
        await api("UpdateGlobalConfig", category="vm", name="reconcile.interval", value="0")
        await asyncio.sleep(0.2)
        runs = reconciler.runs
        await api("UpdateGlobalConfig", category="vm", name="reconcile.interval", value="1")
        await _until("a reconciler pass", lambda: reconciler.runs > runs, 5)


async def test_wait_interval_is_retimed_from_its_start() -> None:
    store = GlobalConfigStore()
    store.declare(GlobalConfigDef("t", "interval", 60, "int", min=0))
    loop = asyncio.get_running_loop()

    started = loop.time()
    sleeping = asyncio.create_task(store.wait_interval("t", "interval"))
    await asyncio.sleep(0.3)
    store.set_cached("t", "interval", "1")  # 0.3 s gone: 0.7 s left of the new interval
    await asyncio.wait_for(sleeping, 3)
    assert 0.9 <= loop.time() - started < 1.6

    started = loop.time()
    sleeping = asyncio.create_task(store.wait_interval("t", "interval"))
    await asyncio.sleep(0.2)
    store.set_cached("t", "interval", "1")  # the same value: no wake-up, no change
    await asyncio.wait_for(sleeping, 3)
    assert 0.9 <= loop.time() - started < 1.6
    assert not store._watchers  # nothing left behind by the sleepers


async def test_sleep_says_whether_a_change_woke_it() -> None:
    store = GlobalConfigStore()
    store.declare(GlobalConfigDef("t", "a", 1, "int"))
    store.declare(GlobalConfigDef("t", "b", 1, "int"))
    assert await store.sleep(0.05, ("t", "a")) is False
    waking = asyncio.create_task(store.sleep(10, ("t", "a")))
    await asyncio.sleep(0.05)
    store.set_cached("t", "b", "2")  # another setting: still asleep
    await asyncio.sleep(0.05)
    assert not waking.done()
    store.set_cached("t", "a", "2")
    assert await asyncio.wait_for(waking, 1) is True


async def test_a_stop_right_after_a_change_still_stops_the_loop() -> None:
    """A change wakes the sleeper; a cancellation in the same moment (a tracker restarted
    right after UpdateGlobalConfig) must still end it. ``asyncio.wait_for`` on Python 3.11
    returned the woken result and lost the cancellation: the loop ran on, and stopping it
    hung (the KVM e2e's tracker restart)."""
    store = GlobalConfigStore()
    store.declare(GlobalConfigDef("t", "interval", 60, "int", min=0))

    async def loop() -> None:
        while True:
            await store.wait_interval("t", "interval")

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    store.set_cached("t", "interval", "30")
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()
