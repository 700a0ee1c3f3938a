"""Volume snapshots on local primary storage taken by the storage side (no root, no libvirt).

A VM's volume is snapshotted by its hypervisor while the VM runs; when the VM is Stopped or
the volume detached, the node asks the agent of the host holding the file, which runs
``qemu-img snapshot``. Revert and delete go the same way. The agents are real in-process
zagents (fake hypervisor driver, real storage commands) as in ``test_kvm_storage_node``; the
volume files are real qcow2 files, checked with ``qemu-img snapshot -l`` and ``qemu-io``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.support import kvmagents
from tests.support.kvmagents import Env, build_kvm_cloud
from zmn.api.errors import ZmnError

MiB = 1 << 20

env = kvmagents.env  # the fixture: a node with in-process KVM agents (fake driver)
qemu_img = kvmagents.qemu_img  # the agents make real volume files
pytestmark = pytest.mark.usefixtures("qemu_img")


def snapshots(path: str) -> list[str]:
    """Snapshot names from ``qemu-img snapshot -l`` (the table after its two header lines)."""
    out = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", path], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[1] for line in out.splitlines()[2:] if line.strip()]


def qemu_io(path: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, path], capture_output=True, text=True
    )


def has_pattern(path: str, byte: int) -> bool:
    done = qemu_io(path, f"read -P {byte} 0 64k")
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


async def snap_rows(cloud: Env, volume_uuid: str) -> list[dict[str, Any]]:
    found = await cloud.api("QueryVolumeSnapshot", conditions=[f"volumeUuid={volume_uuid}"])
    return sorted(found["inventories"], key=lambda s: s["name"])


async def test_snapshots_of_stopped_and_detached_volumes_go_to_the_storage(
    env: Env,
    tmp_path: Path,
) -> None:
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    need(shutil.which("qemu-io") is not None, "needs qemu-io (qemu-utils)")
    api = env.api
    u = await build_kvm_cloud(env)  # kvm1 with a simulator primary storage for root volumes
    local = (
        await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=str(tmp_path / "ls"))
    )["inventory"]
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local", clusterUuid="kvm")
    vm = (
        await api(
            "CreateVmInstance", name="vm1", imageUuid=u["image"],
            instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]],
            primaryStorageUuidForRootVolume="ps",
        )
    )["inventory"]  # fmt: skip
    root = vm["allVolumes"][0]

    # a data volume on local storage that was never attached has no file yet: refused
    data = (
        await api("CreateDataVolume", name="d1", diskSize=16 * MiB, primaryStorageUuid="local")
    )["inventory"]
    path = data["installPath"]
    assert data["status"] == "Ready" and not Path(path).exists()
    with pytest.raises(ZmnError) as refused:
        await api("CreateVolumeSnapshot", volumeUuid=data["uuid"], name="early")
    assert refused.value.code == "KVM.VOLUME_NOT_MADE", refused.value
    assert await snap_rows(env, data["uuid"]) == []

    # attached to the stopped VM, made on kvm1 when the VM starts, then the VM stops
    await api("StopVmInstance", uuid=vm["uuid"])
    await api("AttachDataVolumeToVm", volumeUuid=data["uuid"], vmInstanceUuid=vm["uuid"])
    await api("StartVmInstance", uuid=vm["uuid"])
    assert Path(path).exists() and local["uuid"] == data["primaryStorageUuid"]
    await api("StopVmInstance", uuid=vm["uuid"])
    assert qemu_io(path, "write -P 171 0 64k").returncode == 0  # 0xab

    # VM Stopped: the agent of the volume's host runs qemu-img snapshot -c
    s1 = (await api("CreateVolumeSnapshot", volumeUuid=data["uuid"], name="s1"))["inventory"]
    assert snapshots(path) == [s1["uuid"]]
    # the root volume is on the simulator storage: bookkeeping, as before
    r1 = (await api("CreateVolumeSnapshot", volumeUuid=root["uuid"], name="r1"))["inventory"]
    assert r1["latest"] and r1["primaryStorageUuid"] != local["uuid"]

    # VM Running: the hypervisor takes it (the fake driver holds no file: qemu-img again)
    await api("StartVmInstance", uuid=vm["uuid"])
    s2 = (await api("CreateVolumeSnapshot", volumeUuid=data["uuid"], name="s2"))["inventory"]
    assert snapshots(path) == [s1["uuid"], s2["uuid"]]
    with pytest.raises(ZmnError) as running:  # revert needs the VM stopped; nothing touched
        await api("RevertVolumeFromSnapshot", uuid=s1["uuid"])
    assert running.value.kind == "InvalidState", running.value

    # detached: snapshot, revert and delete on the storage side alone
    await api("StopVmInstance", uuid=vm["uuid"])
    await api("DetachDataVolumeFromVm", uuid=data["uuid"])
    assert qemu_io(path, "write -P 205 0 64k").returncode == 0  # 0xcd
    s3 = (await api("CreateVolumeSnapshot", volumeUuid=data["uuid"], name="s3"))["inventory"]
    assert snapshots(path) == [s1["uuid"], s2["uuid"], s3["uuid"]]
    assert has_pattern(path, 205)
    await api("RevertVolumeFromSnapshot", uuid=s1["uuid"])
    assert has_pattern(path, 171) and not has_pattern(path, 205)
    assert [s["latest"] for s in await snap_rows(env, data["uuid"])] == [True, False, False]
    await api("DeleteVolumeSnapshot", uuid=s2["uuid"])
    assert snapshots(path) == [s1["uuid"], s3["uuid"]]
    assert [s["name"] for s in await snap_rows(env, data["uuid"])] == ["s1", "s3"]
    await api("RevertVolumeFromSnapshot", uuid=s3["uuid"])
    assert has_pattern(path, 205)

    # the host's agent gone: delete and revert fail and change nothing
    env.deployer.kill(u["host"])
    for name in ("DeleteVolumeSnapshot", "RevertVolumeFromSnapshot"):
        with pytest.raises(ZmnError):
            await api(name, uuid=s1["uuid"])
    assert [s["name"] for s in await snap_rows(env, data["uuid"])] == ["s1", "s3"]
    assert snapshots(path) == [s1["uuid"], s3["uuid"]]
