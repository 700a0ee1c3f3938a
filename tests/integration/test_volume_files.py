"""A deleted volume's file goes from the storage holding it, whatever its type.

Real in-process agents (fake hypervisor driver, real storage commands) as in
``test_kvm_storage_node``; one KVM host with a local storage and a SharedMountPoint storage
(a directory under the test's tmp). Data volumes on each are made on the host when the VM
starts with them; deleting them deletes their files, each through its own storage type. An
expunged VM's root volume on the shared storage goes the same way (``/vm/deleted``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import kvmagents
from tests.support.kvmagents import Env, build_kvm_cloud
from zmn.core.service import Call

MiB = 1 << 20

env = kvmagents.env  # the fixture: a node with in-process KVM agents (fake driver)
qemu_img = kvmagents.qemu_img  # the agents make real volume files
pytestmark = pytest.mark.usefixtures("qemu_img")


async def test_deleted_volumes_leave_no_file_on_local_or_shared_storage(
    env: Env,
    tmp_path: Path,
) -> None:
    api = env.api
    u = await build_kvm_cloud(env)  # kvm1 with a simulator primary storage for root volumes
    await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=str(tmp_path / "ls"))
    (tmp_path / "smp").mkdir()
    await api("AddSharedMountPointPrimaryStorage", name="smp", zoneUuid="z1",
              url=str(tmp_path / "smp"))  # fmt: skip
    for ps in ("local", "smp"):
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid=ps, clusterUuid="kvm")
    vm = (await api("CreateVmInstance", name="vm1", imageUuid=u["image"],
                    instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]],
                    primaryStorageUuidForRootVolume="ps"))["inventory"]  # fmt: skip
    await api("StopVmInstance", uuid=vm["uuid"])
    volumes = {}
    for ps in ("local", "smp"):
        data = (
            await api("CreateDataVolume", name=f"d-{ps}", diskSize=16 * MiB, primaryStorageUuid=ps)
        )["inventory"]
        await api("AttachDataVolumeToVm", volumeUuid=data["uuid"], vmInstanceUuid=vm["uuid"])
        volumes[ps] = data
    await api("StartVmInstance", uuid=vm["uuid"])  # made on kvm1 now
    await api("StopVmInstance", uuid=vm["uuid"])
    for ps, data in volumes.items():
        assert Path(data["installPath"]).is_file(), ps
        assert data["installPath"].startswith(str(tmp_path / ("ls" if ps == "local" else ps)))
        await api("DetachDataVolumeFromVm", uuid=data["uuid"])

    await api("DeleteDataVolume", uuid=volumes["local"]["uuid"])
    assert not Path(volumes["local"]["installPath"]).exists()
    assert Path(volumes["smp"]["installPath"]).is_file()  # the other storage's file stays
    await api("DeleteDataVolume", uuid=volumes["smp"]["uuid"])
    assert not Path(volumes["smp"]["installPath"]).exists()

    # an expunged VM's root volume on the shared storage: its file goes the same way
    root = dict(volumes["smp"], uuid="f" * 32, type="Root", installPath=str(tmp_path / "smp/r"))
    Path(root["installPath"]).write_bytes(b"root")
    node = env.node
    call = Call(node, node.admin_principal(), "test")
    await call.publish("/vm/deleted", {"inventory": {**vm, "state": "Destroyed",
                                                     "allVolumes": [root]}})  # fmt: skip
    assert Path(root["installPath"]).exists()  # only Expunged VMs lose their root volume
    await call.publish("/vm/deleted", {"inventory": {**vm, "state": "Expunged",
                                                     "allVolumes": [root]}})  # fmt: skip
    assert not Path(root["installPath"]).exists()
