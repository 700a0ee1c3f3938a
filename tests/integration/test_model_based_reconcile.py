"""The guarantees the model-based test leans on, each pinned by a deterministic test:

- a job that runs past its time limit (``job/defaultTimeout``) fails with ``JOB.TIMEOUT``
  and its flow chain is rolled back at once: no VM, address or capacity leaks;
- a chain cut short by the node stopping is rolled back at the next start and its job says
  so (``JOB.INTERRUPTED`` with the chain and the steps undone);
- the reconciler puts the database back in line with the hypervisor and with the capacity
  invariants, and reports each drift on ``/reconcile/drift``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import update

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, build_cloud, consistent
from zmn.api.errors import Timeout
from zmn.core.bus import Event
from zmn.services.host.models import HostVO
from zmn.services.vm.recovery import recover

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    home = tmp_path_factory.mktemp("reconcile") / "home"
    async with running_node(home) as (node, _server):
        yield await build_cloud(Api(node))


async def usage(cloud: Cloud) -> dict[str, Any]:
    out: dict[str, Any] = {t: await cloud.count(t) for t in ("VmInstance", "UsedIp", "Volume")}
    for key in ("h1", "h2"):
        h = await cloud.host(key)
        out[key] = (h["availableCpuCapacity"], h["availableMemoryCapacity"])
    return out


def sim(cloud: Cloud) -> Any:
    return cloud.api.node.services["host"].simulator  # type: ignore[attr-defined]


async def test_a_job_past_its_time_limit_fails_and_rolls_back(cloud: Cloud) -> None:
    api = cloud.api
    before = await usage(cloud)
    await api("UpdateGlobalConfig", category="job", name="defaultTimeout", value="1")
    try:
        await api("SimulatorInjectFailure", hostUuid="h1", operation="start", latency=3, fail=False)
        with pytest.raises(Timeout) as err:
            await cloud.vm("slow-1", hostUuid=cloud["h1"])
        assert err.value.code == "JOB.TIMEOUT"
        jobs = (await api("QueryJob", conditions=["name=CreateVmInstance", "state=Failed"]))[
            "inventories"
        ]
        assert jobs and jobs[-1]["error"]["code"] == "JOB.TIMEOUT"
        assert jobs[-1]["timeout"] == 1
        assert await usage(cloud) == before  # the chain was rolled back: nothing leaked
        await consistent(api)
        # a stop that hangs: the VM stays Running where it was
        await api("UpdateGlobalConfig", category="job", name="defaultTimeout", value="0")
        vm = await cloud.vm("slow-2", hostUuid=cloud["h1"])
        await api("UpdateGlobalConfig", category="job", name="defaultTimeout", value="1")
        await api("SimulatorInjectFailure", hostUuid="h1", operation="stop", latency=3, fail=False)
        with pytest.raises(Timeout):
            await api("StopVmInstance", uuid=vm["uuid"])
        inv = await cloud.get_vm(vm["uuid"])
        assert (inv["state"], inv["hostUuid"]) == ("Running", cloud["h1"])
        await consistent(api)
    finally:
        await api("UpdateGlobalConfig", category="job", name="defaultTimeout", value="3600")
        await api("SimulatorClearFailures")
    await api("DestroyVmInstance", uuid="slow-2")
    assert await usage(cloud) == before
    assert (await api("QueryJob", conditions=["state=Running"], count=True))["total"] == 0


async def test_an_interrupted_chain_is_rolled_back_and_its_job_says_so(cloud: Cloud) -> None:
    api = cloud.api
    node = api.node
    before = await usage(cloud)
    await api("SimulatorInjectFailure", hostUuid="h1", operation="start", latency=5, fail=False)
    args = {
        "name": "cut-1",
        "imageUuid": cloud["image"],
        "instanceOfferingUuid": cloud["small"],
        "l3NetworkUuids": [cloud["l3"]],
        "hostUuid": cloud["h1"],
    }
    _, job = await node.execute("CreateVmInstance", args, peer_admin=True, wait=False)
    assert job is not None
    for _ in range(200):
        if (await api("QueryVmInstance", conditions=["name=cut-1", "state=Starting"]))[
            "inventories"
        ]:
            break
        await asyncio.sleep(0.02)
    task = node.jobs.tasks[job]
    task.cancel()  # what a node shutdown does to a job past the grace period
    await asyncio.gather(task, return_exceptions=True)
    await recover(node)  # what the next start does
    inv = (await api("GetJob", uuid=job))["inventory"]
    assert inv["state"] == "Interrupted"
    assert inv["error"]["code"] == "JOB.INTERRUPTED"
    assert inv["error"]["details"]["chain"] == "vm-create"
    assert inv["error"]["details"]["flow"] == "vm-instantiate"
    assert "vm-create-record" in inv["error"]["details"]["rolledBack"]
    await api("SimulatorClearFailures")
    assert await usage(cloud) == before
    await consistent(api)


async def test_the_reconciler_follows_the_hypervisor_and_fixes_capacity(cloud: Cloud) -> None:
    api = cloud.api
    node = api.node
    reconciler = node.services["vm"].reconciler  # type: ignore[attr-defined]
    seen: list[dict[str, Any]] = []

    def on_drift(event: Event) -> None:
        seen.append(event.data)

    sub = node.bus.subscribe("/reconcile/drift", on_drift)
    try:
        before = await usage(cloud)
        assert await reconciler.run_once() == []  # nothing to do on a consistent cloud
        a = await cloud.vm("rec-a", hostUuid=cloud["h1"])
        b = await cloud.vm("rec-b", hostUuid=cloud["h1"])
        host = sim(cloud).hosts[cloud["h1"]]
        host.vms.pop(a["uuid"])  # the VM died on the hypervisor behind our back
        host.vms[b["uuid"]].state = "Paused"  # paused from the host's console
        with node.db.tx() as s:  # and a bug leaked 3 CPUs of h2
            s.execute(
                update(HostVO)
                .where(HostVO.uuid == cloud["h2"])
                .values(availableCpuCapacity=HostVO.availableCpuCapacity - 3)
            )
        checks = {v["check"] for v in (await api("CheckConsistency"))["violations"]}
        assert checks == {"host-capacity"}
        drift = await reconciler.run_once()
        assert {(d["check"], d.get("uuid")) for d in drift} == {
            ("vm-hypervisor-state", a["uuid"]),
            ("vm-hypervisor-state", b["uuid"]),
            ("host-capacity", cloud["h2"]),
        }
        assert all(d["fixed"] for d in drift)
        assert len(seen) == 3
        inv_a, inv_b = await cloud.get_vm(a["uuid"]), await cloud.get_vm(b["uuid"])
        assert (inv_a["state"], inv_a["hostUuid"], inv_a["lastHostUuid"]) == (
            "Stopped",
            None,
            cloud["h1"],
        )
        assert inv_b["state"] == "Paused"
        await consistent(api)
        assert await reconciler.run_once() == []  # and it stays fixed
        await api("ResumeVmInstance", uuid=b["uuid"])
        for vm in (a, b):
            await api("DestroyVmInstance", uuid=vm["uuid"])
        assert await usage(cloud) == before
    finally:
        sub.cancel()
