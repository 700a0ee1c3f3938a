"""Local primary storage from the node's side, against real in-process agents (no root).

The agents (fake hypervisor driver, real storage commands) run on loopback addresses as in
``test_kvm_host``; both "hosts" see the same file system, so each reports the ``statvfs`` of
its own directory under one temporary root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import kvmagents
from tests.support.kvmagents import Env
from zmn.api.errors import ZmnError

env = kvmagents.env  # the fixture: a node with in-process KVM agents (fake driver)
qemu_img = kvmagents.qemu_img  # the agents make real volume files
pytestmark = pytest.mark.usefixtures("qemu_img")


def fs_size(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


async def test_capacity_comes_from_the_hosts_and_follows_attach_and_detach(
    env: Env, tmp_path: Path
) -> None:
    api = env.api
    h1 = await env.add("kvm1", "127.0.0.2")
    url = str(tmp_path / "local")
    ps = (await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=url))["inventory"]
    assert (ps["type"], ps["totalCapacity"], ps["status"]) == ("LocalStorage", 0, "Connected")
    ps = (
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local", clusterUuid="kvm")
    )["inventory"]
    one = fs_size(tmp_path)
    assert (tmp_path / "local" / "cache").is_dir()
    assert ps["totalCapacity"] == ps["availableCapacity"] == ps["totalPhysicalCapacity"] == one
    # a second host in the cluster adds its directory when it connects
    await env.add("kvm2", "127.0.0.3")
    ps = (await api("QueryPrimaryStorage", conditions=["name=local"]))["inventories"][0]
    assert ps["totalCapacity"] == ps["availableCapacity"] == 2 * one
    # bytes given to volumes stay taken when the hosts report again
    await env.internal("AllocatePrimaryStorage", size=1 << 30, primaryStorageUuid=ps["uuid"])
    await env.internal("SyncLocalStorage", hostUuid=h1["uuid"])
    ps = (await api("QueryPrimaryStorage", conditions=["name=local"]))["inventories"][0]
    assert ps["availableCapacity"] == 2 * one - (1 << 30)
    # a volume lives on the host that made it: another host is told where it is
    first = await env.internal("PlaceLocalVolume", volumeUuid="v" * 32,
                           primaryStorageUuid=ps["uuid"], hostUuid=h1["uuid"])  # fmt: skip
    other = await env.internal("PlaceLocalVolume", volumeUuid="v" * 32,
                           primaryStorageUuid=ps["uuid"], hostUuid="h" * 32)  # fmt: skip
    assert first == {"hostUuid": h1["uuid"], "new": True}
    assert other == {"hostUuid": h1["uuid"], "new": False}
    await env.internal("ReleasePrimaryStorageCapacity", primaryStorageUuid=ps["uuid"], size=1 << 30)
    ps = (
        await api("DetachPrimaryStorageFromCluster", primaryStorageUuid="local", clusterUuid="kvm")
    )["inventory"]
    assert ps["totalCapacity"] == ps["availableCapacity"] == 0


async def test_bad_urls_are_refused_naming_the_field(env: Env, tmp_path: Path) -> None:
    for url in ("relative", "/", "/a/../b"):
        with pytest.raises(ZmnError) as bad:
            await env.api("AddLocalPrimaryStorage", name="x", zoneUuid="z1", url=url)
        assert bad.value.field == "url", url
    with pytest.raises(ZmnError) as bad:
        await env.api(
            "AddImageStoreBackupStorage", name="s", url="images", hostname="127.0.0.1",
            password="x",
        )  # fmt: skip
    assert bad.value.field == "url"
