"""ZStack's join and field names beside ours: ``Volume.image``, ``Volume.snapshot``,
``Image.volume`` and the list fields ``attachedClusterUuids`` / ``attachedZoneUuids``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, build_cloud
from zmn.api.errors import InvalidArgument


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_node(tmp_path / "home") as (node, server):
        cloud = await build_cloud(Api(node))
        cloud.server = server
        yield cloud


async def uuids(cloud: Cloud, api: str, *conditions: str) -> list[str]:
    rows = (await cloud.api(api, conditions=list(conditions)))["inventories"]
    return sorted(r["uuid"] for r in rows)


async def test_zstack_join_names_query_what_ours_do(cloud: Cloud) -> None:
    vm = await cloud.vm("web1")
    root = vm["rootVolumeUuid"]
    image = cloud["image"]
    name = (await cloud.api("QueryImage", conditions=[f"uuid={image}"]))["inventories"][0]["name"]
    assert await uuids(cloud, "QueryVolume", f"image.name={name}") == [root]
    assert await uuids(cloud, "QueryVolume", f"image.name={name}") == await uuids(
        cloud, "QueryVolume", f"rootImage.name={name}"
    )
    assert await uuids(cloud, "QueryImage", f"volume.uuid={root}") == [image]
    assert await uuids(cloud, "QueryVolume", "image.name=nosuch") == []
    snap = (await cloud.api("CreateVolumeSnapshot", volumeUuid=root, name="s1"))["inventory"]
    assert await uuids(cloud, "QueryVolume", "snapshot.name=s1") == [root]
    assert await uuids(cloud, "QueryVolume", f"snapshot.uuid={snap['uuid']}") == [root]


async def test_attached_list_fields_are_queryable(cloud: Cloud) -> None:
    cluster, zone = cloud["cluster"], cloud["zone"]
    assert await uuids(cloud, "QueryPrimaryStorage", f"attachedClusterUuids={cluster}") == [
        cloud["ps"]
    ]
    assert await uuids(cloud, "QueryL2Network", f"attachedClusterUuids?={cluster},{'0' * 32}") == [
        cloud["l2"]
    ]
    assert await uuids(cloud, "QueryBackupStorage", f"attachedZoneUuids={zone}") == [cloud["bs"]]
    assert await uuids(cloud, "QueryBackupStorage", f"attachedZoneUuids={'0' * 32}") == []
    # the inventory's list field and the query agree
    ps = await cloud.api("QueryPrimaryStorage", conditions=[f"uuid={cloud['ps']}"])
    assert ps["inventories"][0]["attachedClusterUuids"] == [cluster]


async def test_aliases_are_in_the_catalogue_and_typos_still_fail(cloud: Cloud) -> None:
    cat = (await cloud.api("GetApiCatalogue"))["catalogue"]
    types = {r["name"]: r for r in cat["resources"]}
    volume_joins = {j["name"]: j for j in types["Volume"]["joins"]}
    assert volume_joins["image"]["aliasOf"] == "rootImage"
    assert volume_joins["snapshot"]["aliasOf"] == "volumeSnapshot"
    assert types["PrimaryStorage"]["aliases"] == {"attachedClusterUuids": "cluster.uuid"}
    assert types["BackupStorage"]["aliases"] == {"attachedZoneUuids": "zone.uuid"}
    with pytest.raises(InvalidArgument) as err:
        await cloud.api("QueryPrimaryStorage", conditions=["attachedClusterUuid=x"])
    assert err.value.code == "QUERY.UNKNOWN_FIELD"
