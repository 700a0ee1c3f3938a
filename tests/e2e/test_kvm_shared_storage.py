"""Shared primary storage on namespaced KVM hosts with real libvirtd and QEMU (TCG).

Two KVM hosts and the image store host (:func:`tests.support.kvmcloud.kvm_datacenter`), the
guest image. The SharedMountPoint storage is a directory under the test's tmp: the hosts share
the machine's file system (but for their private dirs), so both see it, as if an operator had
mounted one NFS export on both (:func:`tests.support.kvmcloud.add_shared_storage`).

Checked: each host's agent reads the marker the first one wrote and the storage is Connected
with the shared file system's capacity (counted once); a VM created on kvm1 from the guest
image boots (SSH), is stopped and started on kvm2 from the same volume file (a file written in
the guest is still there); snapshot, template and data volume attach work as on local
storage; a host that sees another directory at the path (a bind mount in its own mount
namespace) is not Connected for the storage, says why, and a VM is refused there.

Needs root, openssh-server (client too), libvirt/QEMU and qemu-img (scripts/system-deps.sh).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.datacenter import Datacenter, NsHost
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import (
    add_shared_storage,
    build_kvm_cloud,
    kvm_datacenter,
    kvm_node_conf,
    ns_host,
)
from zmn.api.errors import ZmnError
from zmn.core.service import Call

pytestmark = [
    pytest.mark.root,
    pytest.mark.sshd,
    pytest.mark.libvirt,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

MiB = 1 << 20
SSH = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR")  # fmt: skip


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    with kvm_datacenter(tmp_path_factory.mktemp("dcshared")) as center:
        yield center


class Env:
    def __init__(
        self, api: Api, dc: Datacenter, cloud: dict[str, Any], shared: dict[str, Any], key: Path
    ) -> None:
        self.api, self.dc, self.cloud, self.shared, self.key = api, dc, cloud, shared, key
        self.hosts: dict[str, Any] = cloud["hosts"]

    def ns(self, name: str) -> NsHost:
        return ns_host(self.dc, name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("shared-kvm")
    key = tmp / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    async with running_node(tmp / "home", conf=kvm_node_conf(dc, tmp)) as (node, _server):
        api = Api(node)
        cloud = await build_kvm_cloud(api, dc)
        shared = await add_shared_storage(api, dc, tmp)
        yield Env(api, dc, cloud, shared, key)


async def guest_ssh(h: NsHost, ip: str, key: Path, command: str, timeout: float = 600) -> str:
    """``command`` in the guest over SSH from host ``h``; retried until the guest answers."""
    deadline = time.monotonic() + timeout
    while True:
        out = await asyncio.to_thread(
            h.run, ["ssh", *SSH, "-i", str(key), f"root@{ip}", command], check=False
        )
        if out.returncode == 0:
            return str(out.stdout)
        assert time.monotonic() < deadline, f"ssh {ip}: {out.returncode} {out.stderr}"
        await asyncio.sleep(3)


async def create_vm(env: Env, name: str, host: str, ps: str = "shared") -> dict[str, Any]:
    inv: dict[str, Any] = (
        await env.api(
            "CreateVmInstance",
            name=name,
            imageUuid="zguest",
            instanceOfferingUuid="small",
            l3NetworkUuids=["l3"],
            hostUuid=env.hosts[host]["uuid"],
            primaryStorageUuidForRootVolume=ps,
            sshKeys=[(env.key.with_suffix(".pub")).read_text().strip()],
        )
    )["inventory"]
    return inv


async def sync_shared(env: Env) -> None:
    """What the node does on every ping: each host checks the marker again."""
    node = env.api.node
    msg = node.apis.get("SyncSharedStorage")(primaryStorageUuid=env.shared["uuid"])
    await Call(node, node.admin_principal(), "SyncSharedStorage").call(msg)


async def inventory(env: Env, type_name: str, uuid: str) -> dict[str, Any]:
    got = await env.api(f"Query{type_name}", conditions=[f"uuid={uuid}"])
    inv: dict[str, Any] = got["inventories"][0]
    return inv


async def test_shared_storage_is_connected_on_every_host_with_one_capacity(env: Env) -> None:
    ps = env.shared
    assert ps["type"] == "SharedMountPoint" and ps["status"] == "Connected", ps
    refs = {r["hostUuid"]: r for r in ps["hostRefs"]}
    assert set(refs) == {h["uuid"] for h in env.hosts.values()}
    assert all(r["status"] == "Connected" and r["reason"] is None for r in refs.values()), refs
    marker = Path(ps["url"]) / "zstack_smp_id"
    assert ps["uuid"] in marker.read_text()
    st = os.statvfs(ps["url"])
    assert ps["totalCapacity"] == st.f_blocks * st.f_frsize  # the file system once, not x2
    for name in env.hosts:
        assert env.ns(name).exists(str(marker))


async def test_vm_on_shared_storage_moves_between_hosts_when_stopped(env: Env) -> None:
    vm = await create_vm(env, "s1", "kvm1")
    assert vm["state"] == "Running" and vm["hostUuid"] == env.hosts["kvm1"]["uuid"]
    root = next(v for v in vm["allVolumes"] if v["type"] == "Root")
    assert root["primaryStorageUuid"] == env.shared["uuid"]
    path = root["installPath"]
    assert path.startswith(env.shared["url"] + "/volumes/")
    assert path in env.ns("kvm1").virsh("domblklist", vm["uuid"])
    image_cache = Path(env.shared["url"]) / "cache" / f"{env.cloud['image']['uuid']}.qcow2"
    assert image_cache.exists()  # the image cached once, on the shared directory
    ip = vm["vmNics"][0]["ip"]
    await guest_ssh(env.ns("kvm1"), ip, env.key, "echo kept-on-shared > /root/mark; sync")

    await env.api("StopVmInstance", uuid=vm["uuid"])
    moved = (await env.api("StartVmInstance", uuid=vm["uuid"], hostUuid=env.hosts["kvm2"]["uuid"]))[
        "inventory"
    ]
    assert moved["state"] == "Running" and moved["hostUuid"] == env.hosts["kvm2"]["uuid"]
    assert path in env.ns("kvm2").virsh("domblklist", vm["uuid"])  # the same file
    assert vm["uuid"] not in env.ns("kvm1").virsh("list", "--name")
    out = await guest_ssh(env.ns("kvm2"), ip, env.key, "cat /root/mark")
    assert out.strip() == "kept-on-shared"

    # a data volume on the shared storage, hot-plugged into the running guest
    data = (
        await env.api(
            "CreateDataVolume", name="sd1", diskSize=64 * MiB, primaryStorageUuid="shared"
        )
    )["inventory"]
    await env.api("AttachDataVolumeToVm", volumeUuid=data["uuid"], vmInstanceUuid=vm["uuid"])
    attached = await inventory(env, "Volume", data["uuid"])
    assert attached["installPath"].startswith(env.shared["url"] + "/volumes/")
    assert Path(attached["installPath"]).exists()
    assert attached["installPath"] in env.ns("kvm2").virsh("domblklist", vm["uuid"])
    out = await guest_ssh(env.ns("kvm2"), ip, env.key, "cat /sys/block/vdb/size")
    assert int(out.strip()) * 512 == 64 * MiB

    # stopped: a snapshot of the root volume (qemu-img, by a host that sees the storage) and
    # a template from it on the image store
    await env.api("StopVmInstance", uuid=vm["uuid"])
    snap = (await env.api("CreateVolumeSnapshot", volumeUuid=root["uuid"], name="before"))[
        "inventory"
    ]
    info = subprocess.run(
        ["qemu-img", "snapshot", "-l", "-U", path], capture_output=True, text=True, check=True
    ).stdout
    assert snap["uuid"] in info
    tpl = (
        await env.api(
            "CreateRootVolumeTemplateFromRootVolume", name="stpl", rootVolumeUuid=root["uuid"]
        )
    )["inventory"]
    assert tpl["status"] == "Ready" and tpl["checksum"].startswith("sha256:")
    assert env.ns("store").exists(tpl["backupStorageRefs"][0]["installPath"])
    assert not list((Path(env.shared["url"]) / "export").glob("*"))  # temporary file gone

    await env.api("DestroyVmInstance", uuid=vm["uuid"])
    await env.api("ExpungeVmInstance", uuid=vm["uuid"])
    deadline = time.monotonic() + 60
    while Path(path).exists():  # the file goes through a host that sees the storage
        assert time.monotonic() < deadline, f"{path} still there"
        await asyncio.sleep(1)


async def test_a_host_seeing_another_directory_is_not_connected(env: Env, tmp_path: Path) -> None:
    url = env.shared["url"]
    kvm2 = env.ns("kvm2")
    other = tmp_path / "other-dir"
    other.mkdir()
    kvm2.run(["mount", "--bind", str(other), url])
    try:
        await sync_shared(env)
        ps = await inventory(env, "PrimaryStorage", env.shared["uuid"])
        refs = {r["hostUuid"]: r for r in ps["hostRefs"]}
        bad = refs[env.hosts["kvm2"]["uuid"]]
        assert bad["status"] == "Disconnected", bad
        assert "zstack_smp_id" in bad["reason"] and "same shared directory" in bad["reason"]
        assert refs[env.hosts["kvm1"]["uuid"]]["status"] == "Connected"
        assert ps["status"] == "Connected"  # kvm1 still sees it
        assert not (other / "zstack_smp_id").exists()  # a stray directory is never marked
        with pytest.raises(ZmnError) as err:
            await create_vm(env, "s-bad", "kvm2")
        assert "same shared directory" in str(err.value), err.value
    finally:
        kvm2.run(["umount", url])
    await sync_shared(env)
    ps = await inventory(env, "PrimaryStorage", env.shared["uuid"])
    assert all(r["status"] == "Connected" for r in ps["hostRefs"]), ps["hostRefs"]
