"""Task queues: FIFO per signature, a parallelism level, no leaked slots on cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from zmn.core.taskqueue import TaskQueues


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_level_one_serializes_in_arrival_order() -> None:
    queues = TaskQueues()
    order: list[str] = []
    active = 0
    most = 0

    async def op(name: str) -> None:
        nonlocal active, most
        async with queues.slot("vm:1", 1, name):
            active += 1
            most = max(most, active)
            order.append(f"start {name}")
            await asyncio.sleep(0.01)
            order.append(f"end {name}")
            active -= 1

    await asyncio.gather(*(op(str(i)) for i in range(5)))
    assert most == 1
    assert order == [f"{edge} {i}" for i in range(5) for edge in ("start", "end")]
    assert queues.snapshot() == []  # empty queues disappear
    assert queues.completed == 5


async def test_level_n_allows_n_concurrent_and_stays_fifo() -> None:
    queues = TaskQueues()
    started: list[int] = []
    release = {i: asyncio.Event() for i in range(6)}
    active = 0
    most = 0

    async def op(i: int) -> None:
        nonlocal active, most
        async with queues.slot("host:1", 3, f"t{i}"):
            active += 1
            most = max(most, active)
            started.append(i)
            await release[i].wait()
            active -= 1

    tasks = [asyncio.create_task(op(i)) for i in range(6)]
    await settle()
    assert started == [0, 1, 2]
    release[1].set()
    await settle()
    assert started == [0, 1, 2, 3]  # the oldest waiter gets the freed slot
    for event in release.values():
        event.set()
    await asyncio.gather(*tasks)
    assert most == 3
    assert started == [0, 1, 2, 3, 4, 5]


async def test_signatures_are_independent() -> None:
    queues = TaskQueues()
    gate = asyncio.Event()
    ran: list[str] = []

    async def hold() -> None:
        async with queues.slot("vm:a", 1, "hold"):
            await gate.wait()

    async def other() -> None:
        async with queues.slot("vm:b", 1, "other"):
            ran.append("b")

    holder = asyncio.create_task(hold())
    await settle()
    await asyncio.wait_for(other(), 1)  # not blocked by vm:a
    assert ran == ["b"]
    gate.set()
    await holder


async def test_snapshot_shows_running_and_pending() -> None:
    queues = TaskQueues()
    gate = asyncio.Event()

    async def op(name: str) -> None:
        async with queues.slot("vm:1", 1, name):
            await gate.wait()

    tasks = [asyncio.create_task(op(n)) for n in ("start", "stop", "reboot")]
    await settle()
    (snap,) = queues.snapshot()
    assert snap["signature"] == "vm:1"
    assert snap["level"] == 1
    assert (snap["running"], snap["pending"]) == (1, 2)
    assert snap["runningTasks"] == ["start"]
    assert snap["pendingTasks"] == ["stop", "reboot"]
    assert snap["oldestWaitSeconds"] >= 0
    assert queues.depth() == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert queues.depth() == 0


async def test_cancelling_a_waiter_does_not_leak_a_slot() -> None:
    queues = TaskQueues()
    gate = asyncio.Event()
    ran: list[str] = []

    async def op(name: str) -> None:
        async with queues.slot("vm:1", 1, name):
            ran.append(name)
            await gate.wait()

    first = asyncio.create_task(op("first"))
    waiting = asyncio.create_task(op("cancelled"))
    third = asyncio.create_task(op("third"))
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert queues.snapshot()[0]["pendingTasks"] == ["third"]
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, third), 1)
    assert ran == ["first", "third"]
    assert queues.snapshot() == []
    # the queue is usable afterwards: a new op gets the slot at once
    await asyncio.wait_for(op("later"), 1)


async def test_cancel_after_the_slot_was_handed_over_releases_it() -> None:
    """The waiter is granted the slot but cancelled before it gets to run."""
    queues = TaskQueues()
    entered: list[str] = []

    async def op(name: str) -> None:
        async with queues.slot("vm:1", 1, name):
            entered.append(name)

    holder = queues.slot("vm:1", 1, "first")
    await holder.__aenter__()
    second = asyncio.create_task(op("second"))
    third = asyncio.create_task(op("third"))
    await settle()
    await holder.__aexit__(None, None, None)  # hands the slot to second, without yielding
    assert queues.snapshot()[0]["runningTasks"] == ["second"]
    second.cancel()
    await asyncio.wait_for(asyncio.gather(second, third, return_exceptions=True), 1)
    assert second.cancelled()
    assert entered == ["third"]  # second's slot went on to third
    assert queues.snapshot() == []
    assert queues.depth() == 0


async def test_cancelling_the_running_task_frees_its_slot() -> None:
    queues = TaskQueues()
    ran: list[str] = []

    async def stuck() -> None:
        async with queues.slot("vm:1", 1, "stuck"):
            await asyncio.sleep(10)

    async def op() -> None:
        async with queues.slot("vm:1", 1, "next"):
            ran.append("next")

    task = asyncio.create_task(stuck())
    nxt = asyncio.create_task(op())
    await settle()
    task.cancel()
    await asyncio.wait_for(nxt, 1)
    assert ran == ["next"]
    assert queues.snapshot() == []


async def test_an_error_in_the_body_frees_the_slot() -> None:
    queues = TaskQueues()
    with pytest.raises(RuntimeError):
        async with queues.slot("vm:1", 1, "bad"):
            raise RuntimeError("x")
    async with queues.slot("vm:1", 1, "good"):
        assert queues.snapshot()[0]["runningTasks"] == ["good"]


async def test_vm_slot_is_the_vms_queue_and_no_vm_takes_none() -> None:
    queues = TaskQueues()
    async with queues.vm("abc", "ResizeVolume"):
        assert [(q["signature"], q["runningTasks"]) for q in queues.snapshot()] == [
            ("vm:abc", ["ResizeVolume"])
        ]
        async with queues.vm(None, "CreateVolumeSnapshot"):  # a detached volume: no queue
            assert len(queues.snapshot()) == 1
        waiter = asyncio.ensure_future(_hold(queues.vm("abc", "DeleteVolumeSnapshot")))
        await settle()
        assert not waiter.done()  # the same VM: waits its turn
        assert queues.snapshot()[0]["pendingTasks"] == ["DeleteVolumeSnapshot"]
    await waiter
    assert queues.snapshot() == []


async def _hold(slot: Any) -> None:
    async with slot:
        pass
