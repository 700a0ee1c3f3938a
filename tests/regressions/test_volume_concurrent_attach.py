"""Regression: two attaches of one NotInstantiated data volume to two VMs at once.

Each attach runs in its own VM's task queue and checked "not attached yet" before entering
it. An attach that waited in its queue (the VM was busy) went on with what it had read before
waiting: the volume got storage a second time (the first bytes stayed taken: a primary-storage
capacity leak) and was recorded on both VMs in turn (the last won; the first VM's hypervisor
kept a disk the database did not know). The ``volume-attach`` chain now gives storage and
records the VM with conditional updates: exactly one attach wins, the other answers
``VOLUME.ALREADY_ATTACHED`` and gives back what it took.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import GiB, build_cloud, consistent
from zmn.api.errors import ZmnError


async def test_one_of_two_concurrent_attaches_wins(tmp_path: Path) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api, storage=100 * GiB)
        a, b = await cloud.vm("race-a"), await cloud.vm("race-b")
        free = (await api("QueryPrimaryStorage"))["inventories"][0]["availableCapacity"]
        vol = (await api("CreateDataVolume", name="race", diskSize=GiB))["inventory"]
        # VM a is busy rebooting: the attach to it checks the volume, then waits its turn
        # while the attach to VM b runs through
        await api(
            "SimulatorInjectFailure", hostUuid=a["hostUuid"], operation="reboot", latency=0.3,
            fail=False,
        )  # fmt: skip
        results = await asyncio.gather(
            api("RebootVmInstance", uuid=a["uuid"]),
            api("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=a["uuid"]),
            api("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=b["uuid"]),
            return_exceptions=True,
        )
        reboot, to_a, to_b = results
        assert not isinstance(reboot, BaseException), reboot
        assert isinstance(to_a, ZmnError) and to_a.code == "VOLUME.ALREADY_ATTACHED", to_a
        assert not isinstance(to_b, BaseException), to_b
        inv = (await api("QueryVolume", conditions=[f"uuid={vol['uuid']}"]))["inventories"][0]
        assert (inv["vmInstanceUuid"], inv["deviceId"]) == (b["uuid"], 1)
        ps = (await api("QueryPrimaryStorage"))["inventories"][0]["availableCapacity"]
        assert ps == free - GiB  # taken once
        await consistent(api)
