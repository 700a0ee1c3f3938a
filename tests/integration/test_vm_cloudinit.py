"""cloud-init inputs of a VM on the node: userData/sshKeys (and ZStack's tags) kept with a new
instance ID at each change, refused when bad with nothing created, changed only when Stopped,
gone with the VM; the seed a KVM host would get (:func:`zmn.services.kvm.seed.seed_body`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import Cloud, build_cloud, consistent
from zmn.api.errors import InvalidArgument, InvalidState
from zmn.api.ids import short_id
from zmn.services.kvm.seed import seed_body
from zmn.services.vm.cloudinit import VmCloudInitVO

pytestmark = pytest.mark.asyncio(loop_scope="module")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIALvk7yGVXTUS/H2Eu4E5IRiXIjxrAZwurR7U+5EdZ6r me@a"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJMq9E9pCmg5ObWz7pQJbvjrBrOyRCHxhrpuwUeJrOtn me@b"
USER = "#cloud-config\nruncmd:\n  - touch /root/ran\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory, db_engine: str) -> AsyncIterator[Cloud]:
    # db_engine: one cloud per engine when ZMN_TEST_DB selects several (tests/conftest.py)
    async with running_node(tmp_path_factory.mktemp("ci") / "home") as (node, _server):
        yield await build_cloud(Api(node))


def row(cloud: Cloud, uuid: str) -> dict[str, Any] | None:
    with cloud.api.node.db.tx() as s:
        r = s.get(VmCloudInitVO, uuid)
        return None if r is None else {
            "instanceId": r.instanceId, "userData": r.userData, "sshKeys": r.sshKeys
        }  # fmt: skip


async def system_tags(cloud: Cloud, uuid: str) -> list[str]:
    got = await cloud.api("QuerySystemTag", conditions=[f"resourceUuid={uuid}"])
    return sorted(t["tag"] for t in got["inventories"])


async def test_user_data_and_keys_are_kept_with_an_instance_id(cloud: Cloud) -> None:
    vm = await cloud.vm("ci-1", userData=USER, sshKeys=[KEY, KEY], systemTags=["hostname::web1"])
    kept = row(cloud, vm["uuid"])
    assert kept is not None and kept["instanceId"].startswith("iid-")
    assert base64.b64decode(kept["userData"]).decode() == USER and kept["sshKeys"] == KEY
    assert await system_tags(cloud, vm["uuid"]) == ["hostname::web1"]
    await consistent(cloud.api)


async def test_the_largest_user_data_is_kept_whole(cloud: Cloud) -> None:
    big = "#!/bin/sh\n" + "#" * (64 * 1024 - 11) + "\n"  # exactly 64 KiB
    vm = await cloud.vm("ci-big", userData=big)
    kept = row(cloud, vm["uuid"])
    assert kept is not None and base64.b64decode(kept["userData"]).decode() == big


async def test_user_data_stays_out_of_job_records_and_the_audit_log(cloud: Cloud) -> None:
    secret = "#cloud-config\nchpasswd: {list: 'root:hunter2-secret'}\n"
    await cloud.vm("ci-secret", userData=secret)
    jobs = await cloud.api("QueryJob", conditions=["name=CreateVmInstance"])
    assert jobs["inventories"] and "hunter2" not in str(jobs["inventories"])
    audit = await cloud.api("QueryAuditLog", conditions=["apiName=CreateVmInstance"])
    assert audit["inventories"] and "hunter2" not in str(audit["inventories"])


async def test_zstacks_userdata_and_sshkey_tags_are_taken_in(cloud: Cloud) -> None:
    b64 = base64.b64encode(USER.encode()).decode()
    vm = await cloud.vm("ci-2", systemTags=[f"userdata::{b64}", f"sshkey::{KEY}"])
    kept = row(cloud, vm["uuid"])
    assert kept is not None and kept["userData"] == b64 and kept["sshKeys"] == KEY
    assert await system_tags(cloud, vm["uuid"]) == []  # kept with the VM, not as tags


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"userData": "#" + "x" * 64 * 1024}, "userData"),
        ({"sshKeys": ["ssh-ed25519 not-base64!"]}, "sshKeys[0]"),
        ({"sshKeys": [KEY, "-----BEGIN OPENSSH PRIVATE KEY-----"]}, "sshKeys[1]"),
        ({"systemTags": ["sshkey::not a key"]}, "systemTags"),
        ({"systemTags": ["userdata::%%%"]}, "systemTags"),
        ({"systemTags": ["userdata::" + "QUFB" * 251]}, "systemTags"),  # over 1000 characters
        ({"userData": USER, "systemTags": ["userdata::I2Nsb3VkLWNvbmZpZwo="]}, "userData"),
    ],
)
async def test_bad_input_is_refused_and_creates_nothing(
    cloud: Cloud, args: dict[str, Any], field: str
) -> None:
    before = await cloud.count("VmInstance")
    with pytest.raises(InvalidArgument) as bad:
        await cloud.vm("ci-bad", **args)
    assert bad.value.field == field, bad.value
    assert await cloud.count("VmInstance") == before


async def test_changes_only_when_stopped_each_with_a_new_instance_id(cloud: Cloud) -> None:
    vm = await cloud.vm("ci-3", sshKeys=[KEY])
    first = row(cloud, vm["uuid"])
    assert first is not None
    with pytest.raises(InvalidState) as running:
        await cloud.api("UpdateVmInstance", uuid=vm["uuid"], sshKeys=[KEY2])
    assert running.value.field == "sshKeys" and row(cloud, vm["uuid"]) == first
    await cloud.api("StopVmInstance", uuid=vm["uuid"])
    with pytest.raises(InvalidArgument):
        await cloud.api("UpdateVmInstance", uuid=vm["uuid"], sshKeys=["nope"])
    assert row(cloud, vm["uuid"]) == first
    await cloud.api("UpdateVmInstance", uuid=vm["uuid"], sshKeys=[KEY2], userData=USER)
    second = row(cloud, vm["uuid"])
    assert second is not None and second["sshKeys"] == KEY2 and second["userData"]
    assert second["instanceId"] != first["instanceId"]
    await cloud.api("UpdateVmInstance", uuid=vm["uuid"], userData="#!/bin/sh\ntrue\n")
    third = row(cloud, vm["uuid"])
    assert third is not None and third["sshKeys"] == KEY2  # keys untouched
    assert base64.b64decode(third["userData"]) == b"#!/bin/sh\ntrue\n"
    assert third["instanceId"] not in (first["instanceId"], second["instanceId"])
    await cloud.api("DestroyVmInstance", uuid=vm["uuid"])
    if await cloud.count("VmInstance", f"uuid={vm['uuid']}"):
        await cloud.api("ExpungeVmInstance", uuid=vm["uuid"])
    assert row(cloud, vm["uuid"]) is None


async def test_the_kvm_seed_names_host_keys_and_static_addresses(cloud: Cloud) -> None:
    vm = await cloud.vm("Not A Label", sshKeys=[KEY],
                        systemTags=[f"staticIp::{cloud['l3']}::10.0.0.150"])  # fmt: skip
    ht = SimpleNamespace(node=cloud.api.node)
    body = seed_body(ht, vm)  # type: ignore[arg-type]
    assert body is not None
    nic = vm["vmNics"][0]
    assert body["instanceId"] == row(cloud, vm["uuid"])["instanceId"]  # type: ignore[index]
    assert body["hostname"] == f"vm-{short_id(vm['uuid'], 12)}" and body["sshKeys"] == [KEY]
    assert body["nics"] == [{"mac": nic["mac"], "address": "10.0.0.150", "prefix": 24,
                             "gateway": nic["gateway"]}]  # fmt: skip
    plain = await cloud.vm("plain")
    assert seed_body(ht, plain) is None  # type: ignore[arg-type]
    named = await cloud.vm("named", systemTags=["hostname::db1"])
    got = seed_body(ht, named)  # type: ignore[arg-type]
    assert (
        got is not None
        and got["hostname"] == "db1"
        and got["instanceId"] == (f"iid-{named['uuid']}")
    )
    assert got["nics"] == [{"mac": named["vmNics"][0]["mac"]}]
