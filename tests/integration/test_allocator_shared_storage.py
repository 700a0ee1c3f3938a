"""The host allocator skips hosts that cannot use a VM's shared primary storage.

Two KVM hosts (real in-process agents, fake hypervisor driver, real storage commands as in
``test_shared_storage_node``) and a SharedMountPoint storage (a directory under the test's
tmp that both "hosts" see). One host's view of the storage is made Disconnected (its last
marker check failed; the row is written as the check writes it, since both in-process hosts
share one file system). A VM created or started without a host named goes to the other host
instead of failing with ``PRIMARY_STORAGE.HOST_NOT_CONNECTED``; the migration candidates apply
the same rule; a host named by the operator is refused by the storage's own check, saying why.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.support import kvmagents
from tests.support.kvmagents import Env, build_kvm_cloud
from zmn.api.errors import ZmnError
from zmn.services.primary_storage.models import SharedStorageHostRefVO

REASON = "the directory holds no zstack_smp_id marker (test)"

env = kvmagents.env  # the fixture: a node with in-process KVM agents (fake driver)
qemu_img = kvmagents.qemu_img  # the agents make real volume files
pytestmark = pytest.mark.usefixtures("qemu_img")


def blind(cloud: Env, host_uuid: str, ps_uuid: str) -> None:
    """The host's last check of the storage failed, as ``SyncSharedStorage`` records it."""
    ref = SharedStorageHostRefVO
    with cloud.node.db.tx() as s:
        done = s.execute(
            update(ref)
            .where(ref.primaryStorageUuid == ps_uuid, ref.hostUuid == host_uuid)
            .values(status="Disconnected", reason=REASON)
        )
        assert done.rowcount == 1  # type: ignore[attr-defined]


async def test_create_start_and_candidates_skip_a_host_that_does_not_see_the_storage(
    env: Env,
    tmp_path: Path,
) -> None:
    api = env.api
    u = await build_kvm_cloud(env)  # kvm1 (127.0.0.2) and a simulator storage
    kvm1 = u["host"]
    kvm2 = (await env.add("kvm2", "127.0.0.3"))["uuid"]
    (tmp_path / "smp").mkdir()
    ps = (await api("AddSharedMountPointPrimaryStorage", name="smp", zoneUuid="z1",
                    url=str(tmp_path / "smp")))["inventory"]  # fmt: skip
    ps = (await api("AttachPrimaryStorageToCluster", primaryStorageUuid=ps["uuid"],
                    clusterUuid="kvm"))["inventory"]  # fmt: skip
    assert {r["hostUuid"]: r["status"] for r in ps["hostRefs"]} == {
        kvm1: "Connected",
        kvm2: "Connected",
    }
    # the image already in the storage's cache (no image store here to fetch it from)
    cached = tmp_path / "smp" / "cache" / f"{u['image']}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(cached), "16M"], check=True)
    make = {"imageUuid": u["image"], "instanceOfferingUuid": u["offering"],
            "l3NetworkUuids": [u["l3"]], "primaryStorageUuidForRootVolume": ps["uuid"]}  # fmt: skip

    # kvm1 comes first in the default order (by name); it cannot see the storage: kvm2
    blind(env, kvm1, ps["uuid"])
    vm = (await api("CreateVmInstance", name="vm1", **make))["inventory"]
    assert (vm["state"], vm["hostUuid"]) == ("Running", kvm2)

    # started again, its last host (kvm2) is preferred; that one blind now: kvm1
    vm = (await api("StopVmInstance", uuid=vm["uuid"]))["inventory"]
    assert vm["lastHostUuid"] == kvm2
    blind(env, kvm2, ps["uuid"])
    with env.node.db.tx() as s:
        s.execute(update(SharedStorageHostRefVO).where(SharedStorageHostRefVO.hostUuid == kvm1)
                  .values(status="Connected", reason=None))  # fmt: skip
    vm = (await api("StartVmInstance", uuid=vm["uuid"]))["inventory"]
    assert (vm["state"], vm["hostUuid"]) == ("Running", kvm1)

    # the migration candidates: not kvm2 (the same rule), and migrating there by name is
    # refused by the storage's check, the VM left where it runs
    cands = await api("GetVmMigrationCandidateHosts", vmInstanceUuid=vm["uuid"])
    assert cands["inventories"] == []
    with pytest.raises(ZmnError) as refused:
        await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=kvm2)
    assert refused.value.code == "PRIMARY_STORAGE.HOST_NOT_CONNECTED", refused.value
    got = (await api("QueryVmInstance", conditions=[f"uuid={vm['uuid']}"]))["inventories"][0]
    assert (got["state"], got["hostUuid"]) == ("Running", kvm1)

    # no host sees it: the allocator names the filter and the hosts' reasons
    await api("StopVmInstance", uuid=vm["uuid"])
    blind(env, kvm1, ps["uuid"])
    with pytest.raises(ZmnError) as none:
        await api("StartVmInstance", uuid=vm["uuid"])
    assert none.value.code == "HOST.ALLOCATION_FAILED", none.value
    assert none.value.details["filter"] == "storage-host"
    assert REASON in none.value.message and kvm1 in none.value.message
