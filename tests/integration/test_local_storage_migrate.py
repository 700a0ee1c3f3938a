"""``LocalStorageMigrateVolume`` from the node's side, against real in-process agents (no root).

Two agents on loopback share this machine's file system, so their "local" directories are the
same directory: the migration must see that the destination already has the file and refuse
before copying anything (copying a file onto itself, then deleting the source, would lose it).
Checked here: every refusal names the field and the fix, and a refused or failed migration
changes nothing (records, capacity, files). The copy itself, between two real hosts' private
directories over SSH, is in ``tests/e2e/test_kvm_shared_storage.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support import kvmagents
from tests.support.kvmagents import Env, build_kvm_cloud
from zmn.api.errors import ZmnError
from zmn.core.db import new_uuid
from zmn.core.models import FlowRecordVO
from zmn.services.primary_storage.migrate import MIGRATE_CHAIN, recover
from zmn.services.primary_storage.models import LocalStorageVolumeRefVO

MiB = 1 << 20

env = kvmagents.env  # the fixture: a node with in-process KVM agents (fake driver)
qemu_img = kvmagents.qemu_img  # the agents make real volume files
pytestmark = pytest.mark.usefixtures("qemu_img")


def holder(cloud: Env, volume_uuid: str) -> str | None:
    with cloud.node.db.tx() as s:
        ref = s.get(LocalStorageVolumeRefVO, volume_uuid)
        return None if ref is None else ref.hostUuid


async def refused(cloud: Env, field: str, **args: Any) -> ZmnError:
    with pytest.raises(ZmnError) as err:
        await cloud.api("LocalStorageMigrateVolume", **args)
    assert err.value.field == field, err.value
    return err.value


async def test_refusals_name_the_field_and_change_nothing(
    env: Env,
    tmp_path: Path,
) -> None:
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    api = env.api
    u = await build_kvm_cloud(env)  # kvm1, simulator storage "ps"
    h2 = await env.add("kvm2", "127.0.0.3")
    await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=str(tmp_path / "ls"))
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local", clusterUuid="kvm")
    vm = (
        await api(
            "CreateVmInstance", name="vm1", imageUuid=u["image"],
            instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]],
            primaryStorageUuidForRootVolume="ps", hostUuid=u["host"],
        )
    )["inventory"]  # fmt: skip
    root = vm["allVolumes"][0]
    data = (
        await api("CreateDataVolume", name="d1", diskSize=16 * MiB, primaryStorageUuid="local")
    )["inventory"]

    # never made on a host: nothing to move
    err = await refused(env, "volumeUuid", volumeUuid=data["uuid"], destHostUuid=h2["uuid"])
    assert "no file on any host yet" in err.message
    # not on local storage
    err = await refused(env, "volumeUuid", volumeUuid=root["uuid"], destHostUuid=h2["uuid"])
    assert "not on local primary storage" in err.message

    # made on kvm1 when the VM starts with it (the fake hypervisor cannot hot-plug)
    await api("StopVmInstance", uuid=vm["uuid"])
    await api("AttachDataVolumeToVm", volumeUuid=data["uuid"], vmInstanceUuid=vm["uuid"])
    await api("StartVmInstance", uuid=vm["uuid"])
    path = data["installPath"]
    assert Path(path).exists() and holder(env, data["uuid"]) == u["host"]
    # attached data volume: move the VM's root volume instead
    err = await refused(env, "volumeUuid", volumeUuid=data["uuid"], destHostUuid=h2["uuid"])
    assert "root volume" in err.message and "detach" in err.message
    await api("StopVmInstance", uuid=vm["uuid"])
    await api("DetachDataVolumeFromVm", uuid=data["uuid"])

    # the same host, an unknown host
    err = await refused(env, "destHostUuid", volumeUuid=data["uuid"], destHostUuid=u["host"])
    assert "already" in err.message
    with pytest.raises(ZmnError) as unknown:
        await api("LocalStorageMigrateVolume", volumeUuid=data["uuid"], destHostUuid="nohost")
    assert unknown.value.kind == "NotFound"

    # both "hosts" see one directory: the destination has the file, nothing is copied
    before = (await api("QueryPrimaryStorage", conditions=["name=local"]))["inventories"][0]
    err = await refused(env, "destHostUuid", volumeUuid="d1", destHostUuid="kvm2")
    assert err.code == "PRIMARY_STORAGE.LOCAL_MIGRATE_FAILED"
    assert "looks shared between the hosts" in err.message and "SharedMountPoint" in err.message
    assert err.details.get("flow") == "local-migrate-check"
    assert Path(path).exists() and not Path(path + ".migrating").exists()
    assert holder(env, data["uuid"]) == u["host"]
    after = (await api("QueryPrimaryStorage", conditions=["name=local"]))["inventories"][0]
    assert after["availableCapacity"] == before["availableCapacity"]
    with env.node.db.tx() as s:  # the run was recorded and undone
        states = list(
            s.scalars(select(FlowRecordVO.state).where(FlowRecordVO.chain == MIGRATE_CHAIN))
        )
    assert states == ["RolledBack"], states


async def test_a_run_cut_by_a_crash_is_rolled_back_or_finished_at_restart(
    env: Env,
    tmp_path: Path,
) -> None:
    """Records as a node killed mid-way leaves them; ``recover`` (what the service runs at
    start) settles them. The two hosts share one directory here, so the run's data names
    stand-in files for "the copy on the destination" and "the file on the source"."""
    api = env.api
    h1 = await env.add("kvm1", "127.0.0.2")
    h2 = await env.add("kvm2", "127.0.0.3")
    root = tmp_path / "ls"
    await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=str(root))
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local", clusterUuid="kvm")
    ps = (await api("QueryPrimaryStorage", conditions=["name=local"]))["inventories"][0]
    vol_uuid = "f" * 32
    with env.node.db.tx() as s:
        s.add(LocalStorageVolumeRefVO(volumeUuid=vol_uuid, primaryStorageUuid=ps["uuid"],
                                      hostUuid=h1["uuid"]))  # fmt: skip

    def interrupted(path: Path, done: list[str], current: str | None) -> str:
        uuid = new_uuid()
        plan = {
            "volumeUuid": vol_uuid, "vmUuid": None, "srcHostUuid": h1["uuid"],
            "destHostUuid": h2["uuid"], "destHostName": "kvm2",
            "volumes": [{"uuid": vol_uuid, "path": str(path), "root": str(root),
                         "imageUuid": None}],
        }  # fmt: skip
        with env.node.db.tx() as s:
            s.add(FlowRecordVO(uuid=uuid, chain=MIGRATE_CHAIN, state="Running",
                               currentFlow=current, doneFlows=json.dumps(done),
                               data=json.dumps(plan), managementNodeUuid=env.node.uuid))  # fmt: skip
        return uuid

    def state_of(uuid: str) -> str:
        with env.node.db.tx() as s:
            rec = s.get(FlowRecordVO, uuid)
            assert rec is not None
            return rec.state

    # killed while copying: the partial copy on the destination goes, the volume stays
    copy = root / "volumes" / "copy" / "v.qcow2"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"copied")
    Path(str(copy) + ".migrating").write_bytes(b"part")
    cut = interrupted(copy, ["local-migrate-check"], "local-migrate-copy")
    await recover(env.node)
    assert state_of(cut) == "RolledBack"
    assert not copy.exists() and not Path(str(copy) + ".migrating").exists()
    assert holder(env, vol_uuid) == h1["uuid"]

    # killed after the last step (the records moved): finished, the source's file goes
    old = root / "volumes" / "old" / "v.qcow2"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"source")
    with env.node.db.tx() as s:
        ref = s.get(LocalStorageVolumeRefVO, vol_uuid)
        assert ref is not None
        ref.hostUuid = h2["uuid"]
    done = interrupted(old, ["local-migrate-check", "local-migrate-copy", "local-migrate-record"],
                       "local-migrate-record")  # fmt: skip
    await recover(env.node)
    assert state_of(done) == "Done"
    assert not old.exists() and holder(env, vol_uuid) == h2["uuid"]
