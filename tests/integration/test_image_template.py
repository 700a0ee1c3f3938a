"""CreateRootVolumeTemplateFromRootVolume on simulator hosts: refused for a running VM or a
data volume with nothing recorded; a stopped VM's root volume becomes a Ready template a new
VM boots from. (The KVM bytes path: tests/e2e/test_guest_kvm.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, build_cloud, consistent
from zmn.api.errors import InvalidArgument, InvalidState

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    async with running_node(tmp_path_factory.mktemp("tpl") / "home") as (node, _server):
        yield await build_cloud(Api(node))


async def test_template_from_a_stopped_vms_root_volume(cloud: Cloud) -> None:
    api = cloud.api
    vm = await cloud.vm("tpl-src")
    images = await cloud.count("Image")
    with pytest.raises(InvalidState) as running:
        await api("CreateRootVolumeTemplateFromRootVolume", name="t1",
                  rootVolumeUuid=vm["rootVolumeUuid"])  # fmt: skip
    assert running.value.code == "IMAGE.VM_NOT_STOPPED"
    assert running.value.field == "rootVolumeUuid"
    assert await cloud.count("Image") == images
    await api("StopVmInstance", uuid=vm["uuid"])
    tpl = (await api("CreateRootVolumeTemplateFromRootVolume", name="t1",
                     rootVolumeUuid=vm["rootVolumeUuid"]))["inventory"]  # fmt: skip
    assert tpl["status"] == "Ready" and tpl["mediaType"] == "RootVolumeTemplate"
    assert tpl["format"] == "qcow2" and tpl["backupStorageRefs"]
    root = next(v for v in vm["allVolumes"] if v["uuid"] == vm["rootVolumeUuid"])
    assert tpl["size"] == root["size"]
    again = await cloud.vm("tpl-copy", imageUuid=tpl["uuid"])
    assert again["state"] == "Running" and again["imageUuid"] == tpl["uuid"]
    await consistent(api)


async def test_a_data_volume_is_refused(cloud: Cloud) -> None:
    await cloud.api("CreateDiskOffering", name="d1", diskSize=1 << 30)
    vol = (await cloud.api("CreateDataVolume", name="dv", diskOfferingUuid="d1"))["inventory"]
    with pytest.raises(InvalidArgument) as bad:
        await cloud.api("CreateRootVolumeTemplateFromRootVolume", name="t2",
                        rootVolumeUuid=vol["uuid"])  # fmt: skip
    assert bad.value.code == "IMAGE.NOT_ROOT_VOLUME"


async def test_iso_drive_records_on_a_stopped_vm(cloud: Cloud) -> None:
    api = cloud.api
    bs = (await api("QueryBackupStorage"))["inventories"][0]["uuid"]
    iso = (await api("AddImage", name="iso1", url="http://example.invalid/a.iso", format="iso",
                     mediaType="ISO", backupStorageUuids=[bs]))["inventory"]  # fmt: skip
    await api("CreateDiskOffering", name="d8", diskSize=8 << 30)
    from_iso = await cloud.vm("from-iso", imageUuid="iso1", rootDiskOfferingUuid="d8")
    tags = await api("QuerySystemTag", conditions=[f"resourceUuid={from_iso['uuid']}"])
    assert [t["tag"] for t in tags["inventories"]] == [f"iso::{iso['uuid']}"]
    vm = await cloud.vm("iso-target")
    await api("StopVmInstance", uuid=vm["uuid"])
    with pytest.raises(InvalidArgument) as not_iso:
        await api("AttachIsoToVmInstance", vmInstanceUuid=vm["uuid"], isoUuid=cloud["image"])
    assert not_iso.value.code == "VM_INSTANCE.NOT_AN_ISO"
    await api("AttachIsoToVmInstance", vmInstanceUuid=vm["uuid"], isoUuid="iso1")
    await api("AttachIsoToVmInstance", vmInstanceUuid=vm["uuid"], isoUuid="iso1")  # idempotent
    got = await api("QuerySystemTag", conditions=[f"resourceUuid={vm['uuid']}"])
    assert [t["tag"] for t in got["inventories"]] == [f"iso::{iso['uuid']}"]
    await api("DetachIsoFromVmInstance", vmInstanceUuid=vm["uuid"])
    with pytest.raises(InvalidArgument) as empty:
        await api("DetachIsoFromVmInstance", vmInstanceUuid=vm["uuid"])
    assert empty.value.code == "VM_INSTANCE.NO_ISO"
    assert (await api("QuerySystemTag", conditions=[f"resourceUuid={vm['uuid']}"]))[
        "inventories"
    ] == []
