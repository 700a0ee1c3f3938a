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
