"""``LocalStorageMigrateVolume`` from the node's side, against real in-process agents (no root).

Two agents on loopback share this machine's file system, so their "local" directories are the
same directory: the migration must see that the destination already has the file and refuse
before copying anything (copying a file onto itself, then deleting the source, would lose it).
Checked here: every refusal names the field and the fix, and a refused or failed migration
changes nothing (records, capacity, files). The copy itself, between two real hosts' private
directories over SSH, is in ``tests/e2e/test_kvm_shared_storage.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.test_kvm_host import Env, build_kvm_cloud
from tests.integration.test_kvm_storage_node import env  # noqa: F401 - the fixture
from zmn.api.errors import ZmnError
from zmn.core.models import FlowRecordVO
from zmn.services.primary_storage.migrate import MIGRATE_CHAIN
from zmn.services.primary_storage.models import LocalStorageVolumeRefVO

MiB = 1 << 20


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
    env: Env,  # noqa: F811
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
