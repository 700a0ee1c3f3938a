"""Shared primary storage from the node's side, against real in-process agents (no root).

Two agents (fake hypervisor driver, real storage commands) on loopback addresses as in
``test_kvm_host``; they share this machine's file system, so a directory under the test's tmp
is "mounted on every host". Checked: the marker written once and read by both, the capacity
counted once, each host's status and reason in the inventory, a storage whose directory holds
another storage's marker or is missing is not Connected (and no volume is allocated on it),
detach drops the hosts, NFS input and global config.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support import kvmagents
from tests.support.kvmagents import Env
from zmn.api.errors import ZmnError
from zmn.core.db import new_uuid
from zmn.services.primary_storage.models import SharedStorageHostRefVO, SharedStorageMarkerVO

env = kvmagents.env  # the fixture: a node with in-process KVM agents (fake driver)
qemu_img = kvmagents.qemu_img  # the agents make real volume files
pytestmark = pytest.mark.usefixtures("qemu_img")


async def query(env: Env, name: str) -> dict[str, Any]:
    inv: dict[str, Any] = (await env.api("QueryPrimaryStorage", conditions=[f"name={name}"]))[
        "inventories"
    ][0]
    return inv


def fs_size(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


async def test_every_host_reads_the_marker_and_capacity_counts_once(
    env: Env, tmp_path: Path
) -> None:
    api = env.api
    h1 = await env.add("kvm1", "127.0.0.2")
    h2 = await env.add("kvm2", "127.0.0.3")
    url = tmp_path / "shared"
    url.mkdir()
    ps = (await api("AddSharedMountPointPrimaryStorage", name="smp", zoneUuid="z1", url=str(url)))[
        "inventory"
    ]
    assert (ps["type"], ps["status"], ps["totalCapacity"]) == ("SharedMountPoint", "Connecting", 0)
    assert ps["mountPath"] == ps["url"] == str(url) and ps["hostRefs"] == []
    ps = (await api("AttachPrimaryStorageToCluster", primaryStorageUuid="smp", clusterUuid="kvm"))[
        "inventory"
    ]
    assert ps["status"] == "Connected"
    assert {r["hostUuid"]: r["status"] for r in ps["hostRefs"]} == {
        h1["uuid"]: "Connected",
        h2["uuid"]: "Connected",
    }
    marker = json.loads((url / "zstack_smp_id").read_text())
    assert marker["primaryStorageUuid"] == ps["uuid"] and len(marker["nonce"]) == 32
    one = fs_size(url)
    assert ps["totalCapacity"] == ps["availableCapacity"] == ps["totalPhysicalCapacity"] == one
    assert (url / "cache").is_dir() and (url / "volumes").is_dir()

    # bytes given to volumes stay taken when the hosts report again (pings)
    await env.internal("AllocatePrimaryStorage", size=1 << 30, primaryStorageUuid=ps["uuid"])
    await env.internal("SyncSharedStorage", hostUuid=h1["uuid"])
    await env.internal("SyncSharedStorage", primaryStorageUuid=ps["uuid"])
    ps = await query(env, "smp")
    assert ps["totalCapacity"] == one and ps["availableCapacity"] == one - (1 << 30)
    await env.internal("ReleasePrimaryStorageCapacity", primaryStorageUuid=ps["uuid"], size=1 << 30)
    # which host may use it: both; without a host, a connected one
    got = await env.internal(
        "GetSharedStorageHost", primaryStorageUuid=ps["uuid"], hostUuid=h2["uuid"]
    )
    assert got == {"hostUuid": h2["uuid"]}
    anyone = await env.internal("GetSharedStorageHost", primaryStorageUuid=ps["uuid"])
    assert anyone["hostUuid"] in {h1["uuid"], h2["uuid"]}

    # the marker gone (someone replaced the directory): no host may use it, the reason says why
    (url / "zstack_smp_id").unlink()
    await env.internal("SyncSharedStorage", primaryStorageUuid=ps["uuid"])
    ps = await query(env, "smp")
    assert ps["status"] == "Disconnected"
    assert all(
        r["status"] == "Disconnected" and "zstack_smp_id" in r["reason"] for r in ps["hostRefs"]
    ), ps["hostRefs"]
    assert not (url / "zstack_smp_id").exists()  # never written again behind the operator
    with pytest.raises(ZmnError) as err:
        await env.internal(
            "GetSharedStorageHost", primaryStorageUuid=ps["uuid"], hostUuid=h1["uuid"]
        )
    assert err.value.code == "PRIMARY_STORAGE.HOST_NOT_CONNECTED"
    assert "same shared directory" in err.value.message
    with pytest.raises(ZmnError) as err:
        await env.internal("AllocatePrimaryStorage", size=1, primaryStorageUuid=ps["uuid"])
    assert err.value.code == "PRIMARY_STORAGE.ALLOCATION_FAILED"

    # detached: its hosts no longer count
    ps = (
        await api("DetachPrimaryStorageFromCluster", primaryStorageUuid="smp", clusterUuid="kvm")
    )["inventory"]
    assert ps["hostRefs"] == [] and ps["status"] == "Disconnected"
    await env.internal("SyncSharedStorage", hostUuid=h1["uuid"])  # nothing attached: a no-op
    await api("DeletePrimaryStorage", uuid="smp")
    with env.node.db.tx() as s:  # its marker identity and host views went with it
        assert s.get(SharedStorageMarkerVO, ps["uuid"]) is None
        assert not list(s.scalars(select(SharedStorageHostRefVO)))


async def test_a_directory_of_another_storage_or_missing_is_not_connected(
    env: Env, tmp_path: Path
) -> None:
    api = env.api
    await env.add("kvm1", "127.0.0.2")
    url = tmp_path / "shared"
    url.mkdir()
    for name in ("first", "second"):  # the same directory given twice
        await api("AddSharedMountPointPrimaryStorage", name=name, zoneUuid="z1", url=str(url))
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid=name, clusterUuid="kvm")
    first, second = await query(env, "first"), await query(env, "second")
    assert first["status"] == "Connected"
    assert second["status"] == "Disconnected"
    reason = second["hostRefs"][0]["reason"]
    assert first["uuid"] in reason and "not the same shared directory" in reason
    assert second["totalCapacity"] == 0

    await api(
        "AddSharedMountPointPrimaryStorage", name="gone", zoneUuid="z1", url=str(tmp_path / "no")
    )
    gone = (
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid="gone", clusterUuid="kvm")
    )["inventory"]
    assert gone["status"] == "Disconnected"
    assert (
        "does not exist on this host: mount the shared file system"
        in (gone["hostRefs"][0]["reason"])
    )
    assert not (tmp_path / "no").exists()


async def test_bad_input_names_the_field(env: Env) -> None:
    for url in ("relative", "/", "/a/../b"):
        with pytest.raises(ZmnError) as bad:
            await env.api("AddSharedMountPointPrimaryStorage", name="x", zoneUuid="z1", url=url)
        assert bad.value.field == "url", url
    for url in ("/exports/x", "host:relative", "host:/a/../b", "a b:/x"):
        with pytest.raises(ZmnError) as bad:
            await env.api("AddNfsPrimaryStorage", name="x", zoneUuid="z1", url=url)
        assert bad.value.field == "url" and "HOST:/path" in bad.value.message, url
    nfs = (await env.api("AddNfsPrimaryStorage", name="nfs", zoneUuid="z1", url="10.0.0.5:/exp"))[
        "inventory"
    ]
    assert nfs["type"] == "NFS" and nfs["url"] == "10.0.0.5:/exp"
    assert nfs["mountPath"] == f"/var/lib/zagent/nfs/{nfs['uuid']}"
    cfg = env.node.global_config
    assert "soft" in str(cfg.get("nfsPrimaryStorage", "mount.options"))
    with pytest.raises(ZmnError) as bad:
        await env.api(
            "UpdateGlobalConfig", category="nfsPrimaryStorage", name="mount.options", value="a b"
        )
    assert "mount options" in bad.value.message


async def test_an_nfs_storage_detached_from_a_cluster_is_unmounted_on_its_hosts(env: Env) -> None:
    """The agents' executors record the commands (no NFS client here); the mount directory is
    real and shared by the in-process hosts, so the first one writes the marker there."""
    hosts = [(await env.add(f"kvm{i}", f"127.0.0.{i + 1}"))["uuid"] for i in (1, 2)]
    uuid = new_uuid()
    path = f"/var/lib/zagent/nfs/{uuid}"
    try:
        await env.api("AddNfsPrimaryStorage", name="nfs", zoneUuid="z1", url="10.0.0.5:/exp",
                      resourceUuid=uuid)  # fmt: skip
        ps = (await env.api("AttachPrimaryStorageToCluster", primaryStorageUuid=uuid,
                            clusterUuid="kvm"))["inventory"]  # fmt: skip
        assert ps["status"] == "Connected", ps["hostRefs"]
        executors = [env.deployer.agents[h].commands.executor for h in hosts]
        for ex in executors:
            mount = [c for c in ex.commands if "mount" in c]  # type: ignore[attr-defined]
            assert mount and mount[0][-2:] == ["10.0.0.5:/exp", path], mount
            # what the kernel would now show in the host's mount table
            ex.files["/proc/self/mountinfo"] = (  # type: ignore[attr-defined]
                f"36 25 0:52 / {path} rw,relatime shared:1 - nfs4 10.0.0.5:/exp rw\n"
            )
        await env.api("DetachPrimaryStorageFromCluster", primaryStorageUuid=uuid,
                      clusterUuid="kvm")  # fmt: skip
        for ex in executors:
            assert ["umount", path] in ex.commands  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(path, ignore_errors=True)
