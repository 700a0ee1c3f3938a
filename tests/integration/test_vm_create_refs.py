"""CreateVmInstance's reference parameters that ``plan_create`` reads itself (``Ref(read=True)``):
the API's reference check takes their UUIDs without a lookup of its own, and the answer for
one that names nothing is still NotFound naming the parameter, with nothing left behind.
Names are still resolved up front."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, build_cloud, consistent
from zmn.api.errors import NotFound
from zmn.api.ids import new_uuid
from zmn.core import crud

pytestmark = [pytest.mark.usefixtures("cheap_hashes"), pytest.mark.asyncio]

# parameter -> (its value when it names nothing, the resource type the error names)
MISSING = {
    "imageUuid": (lambda u: u, "IMAGE"),
    "instanceOfferingUuid": (lambda u: u, "INSTANCE_OFFERING"),
    "l3NetworkUuids": (lambda u: [u], "L3_NETWORK"),
    "rootDiskOfferingUuid": (lambda u: u, "DISK_OFFERING"),
    "dataDiskOfferingUuids": (lambda u: [u], "DISK_OFFERING"),
    "hostUuid": (lambda u: u, "HOST"),
    "clusterUuid": (lambda u: u, "CLUSTER"),
}


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_node(tmp_path / "home") as (node, _server):
        yield await build_cloud(Api(node))


def _args(cloud: Cloud, **extra: Any) -> dict[str, Any]:
    return {
        "name": "vm",
        "imageUuid": cloud["image"],
        "instanceOfferingUuid": cloud["small"],
        "l3NetworkUuids": [cloud["l3"]],
        **extra,
    }


@pytest.mark.parametrize("field", sorted(MISSING))
async def test_a_uuid_that_names_nothing_is_not_found_naming_the_parameter(
    cloud: Cloud, field: str
) -> None:
    value, code = MISSING[field]
    missing = new_uuid()
    with pytest.raises(NotFound) as err:
        await cloud.api("CreateVmInstance", **_args(cloud, **{field: value(missing)}))
    assert err.value.field == field
    assert err.value.code == f"{code}.NOT_FOUND"
    assert missing in str(err.value)
    assert await cloud.count("VmInstance") == 0
    await consistent(cloud.api)


async def test_the_reference_check_looks_up_no_uuid_the_plan_reads(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    real = crud._uuid_check

    def counting(model: Any, owned: bool) -> Any:
        looked_up.append(model.__tablename__)
        return real(model, owned)

    monkeypatch.setattr(crud, "_uuid_check", counting)
    vm = await cloud.vm("planned", defaultL3NetworkUuid=cloud["l3"], zoneUuid=cloud["zone"])
    assert vm["state"] == "Running"
    # the two references the plan does not read are still checked up front
    assert sorted(looked_up) == ["l3_network", "zone"]


async def test_names_are_still_resolved(cloud: Cloud) -> None:
    vm = await cloud.api(
        "CreateVmInstance",
        name="by-name",
        imageUuid="img",
        instanceOfferingUuid="small",
        l3NetworkUuids=["l3"],
        dataDiskOfferingUuids=["d10"],
    )
    inv = vm["inventory"]
    assert inv["state"] == "Running"
    assert inv["imageUuid"] == cloud["image"]
    assert inv["vmNics"][0]["l3NetworkUuid"] == cloud["l3"]
    assert len(inv["allVolumes"]) == 2


async def test_a_normal_account_gets_the_same_answer(cloud: Cloud) -> None:
    node = cloud.api.node
    await cloud.api("CreateAccount", name="alice", password="alice-password")
    login = await cloud.api("LogInByAccount", accountName="alice", password="alice-password")
    session = login["inventory"]["uuid"]
    missing = new_uuid()
    with pytest.raises(NotFound) as err:
        await node.execute("CreateVmInstance", _args(cloud, imageUuid=missing), session=session)
    assert err.value.field == "imageUuid"
    reply, _job = await node.execute(
        "CreateVmInstance", _args(cloud, name="alice-vm"), session=session
    )
    assert reply["inventory"]["state"] == "Running"
    await consistent(cloud.api)
