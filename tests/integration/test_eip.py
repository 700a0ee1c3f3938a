"""VIPs and EIPs without VMs: address accounting through the network service, EIP on a VIP,
delete rules (a VIP in use refuses unless cascade), joins, and CheckConsistency after each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import Api, running_node
from zmn.api.errors import Conflict, InvalidArgument, NotFound


async def consistent(api: Api) -> None:
    assert (await api("CheckConsistency"))["violations"] == []


async def used_ips(api: Api, l3: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await api("QueryUsedIp", conditions=[f"l3NetworkUuid={l3}"]))[
        "inventories"
    ]
    return rows


async def networks(api: Api) -> dict[str, str]:
    zone = (await api("CreateZone", name="z1"))["inventory"]["uuid"]
    l2 = (await api("CreateL2NoVlanNetwork", name="l2", zoneUuid=zone, physicalInterface="eth0"))[
        "inventory"
    ]["uuid"]
    pub = (await api("CreateL3Network", name="public", l2NetworkUuid=l2, category="Public"))[
        "inventory"
    ]["uuid"]
    await api(
        "AddIpRange",
        name="pub-range",
        l3NetworkUuid=pub,
        startIp="192.168.100.10",
        endIp="192.168.100.12",
        netmask="255.255.255.0",
        gateway="192.168.100.1",
    )
    return {"zone": zone, "l2": l2, "public": pub}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Api, dict[str, str]]]:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        nets = await networks(api)
        yield api, nets
        await consistent(api)


async def test_vip_takes_and_returns_an_address(env: tuple[Api, dict[str, str]]) -> None:
    api, nets = env
    vip = (await api("CreateVip", name="vip1", l3NetworkUuid="public"))["inventory"]
    assert vip["ip"] == "192.168.100.10"
    assert vip["l3NetworkUuid"] == nets["public"]
    assert vip["netmask"] == "255.255.255.0" and vip["gateway"] == "192.168.100.1"
    assert vip["useFor"] is None and vip["state"] == "Enabled"
    ips = await used_ips(api, nets["public"])
    assert [(i["uuid"], i["ip"], i["usedFor"]) for i in ips] == [
        (vip["usedIpUuid"], "192.168.100.10", "Vip")
    ]
    await consistent(api)
    # a required address, and the refusal of one taken
    vip2 = (
        await api("CreateVip", name="vip2", l3NetworkUuid="public", requiredIp="192.168.100.12")
    )["inventory"]
    assert vip2["ip"] == "192.168.100.12"
    with pytest.raises(Conflict) as taken:
        await api("CreateVip", name="vip3", l3NetworkUuid="public", requiredIp="192.168.100.12")
    assert taken.value.code == "L3.IP_IN_USE"
    assert taken.value.field == "requiredIp"
    assert "requiredIp" in taken.value.message
    with pytest.raises(InvalidArgument) as outside:
        await api("CreateVip", name="vip3", l3NetworkUuid="public", requiredIp="10.9.9.9")
    assert outside.value.field == "requiredIp"
    # the last free address, then exhaustion
    await api("CreateVip", name="vip3", l3NetworkUuid="public")
    with pytest.raises(Conflict) as exhausted:
        await api("CreateVip", name="vip4", l3NetworkUuid="public")
    assert exhausted.value.code == "L3.IP_EXHAUSTED"
    assert "IP exhausted" in exhausted.value.message
    assert len(await used_ips(api, nets["public"])) == 3
    # a refused create (duplicate name) takes no address
    with pytest.raises(Conflict) as dup:
        await api("CreateVip", name="vip1", l3NetworkUuid="public")
    assert dup.value.code == "VIP.DUPLICATE_NAME"
    assert len(await used_ips(api, nets["public"])) == 3
    # delete gives the address back
    await api("DeleteVip", uuid="vip1")
    ips = await used_ips(api, nets["public"])
    assert sorted(i["ip"] for i in ips) == ["192.168.100.11", "192.168.100.12"]
    assert vip["usedIpUuid"] not in {i["uuid"] for i in ips}
    again = (await api("CreateVip", name="vip1", l3NetworkUuid="public"))["inventory"]
    assert again["ip"] == "192.168.100.10"


async def test_vip_create_is_idempotent_on_resource_uuid(
    env: tuple[Api, dict[str, str]],
) -> None:
    api, nets = env
    uuid = "a" * 32
    first = (await api("CreateVip", name="v", l3NetworkUuid="public", resourceUuid=uuid))[
        "inventory"
    ]
    second = (await api("CreateVip", name="v", l3NetworkUuid="public", resourceUuid=uuid))[
        "inventory"
    ]
    assert first["uuid"] == second["uuid"] == uuid
    assert first["ip"] == second["ip"]
    assert len(await used_ips(api, nets["public"])) == 1


async def test_eip_on_a_vip_and_delete_rules(env: tuple[Api, dict[str, str]]) -> None:
    api, nets = env
    vip = (await api("CreateVip", name="vip1", l3NetworkUuid="public"))["inventory"]
    eip = (await api("CreateEip", name="eip1", vipUuid="vip1"))["inventory"]
    assert eip["vipUuid"] == vip["uuid"] and eip["vipIp"] == vip["ip"]
    assert eip["vmNicUuid"] is None and eip["guestIp"] is None
    vip_now = (await api("QueryVip", conditions=["name=vip1"]))["inventories"][0]
    assert vip_now["useFor"] == "Eip"
    await consistent(api)

    # one EIP per VIP
    with pytest.raises(Conflict) as in_use:
        await api("CreateEip", name="eip2", vipUuid="vip1")
    assert in_use.value.code == "EIP.VIP_IN_USE" and in_use.value.field == "vipUuid"
    # detach of an EIP attached to nothing
    with pytest.raises(Conflict) as not_attached:
        await api("DetachEip", eipUuid="eip1")
    assert not_attached.value.code == "EIP.NOT_ATTACHED"

    # joins both ways, and the VIP by its address
    found = await api("QueryEip", conditions=[f"vip.ip={vip['ip']}"])
    assert [e["uuid"] for e in found["inventories"]] == [eip["uuid"]]
    found = await api("QueryVip", conditions=["eip.name=eip1"])
    assert [v["uuid"] for v in found["inventories"]] == [vip["uuid"]]
    found = await api("QueryL3Network", conditions=["vip.eip.name=eip1"])
    assert [n["uuid"] for n in found["inventories"]] == [nets["public"]]

    # rename
    renamed = (await api("UpdateEip", uuid="eip1", name="web-eip"))["inventory"]
    assert renamed["name"] == "web-eip"

    # the VIP refuses to go while the EIP uses it
    with pytest.raises(Conflict) as busy:
        await api("DeleteVip", uuid="vip1")
    assert busy.value.code == "VIP.HAS_DEPENDENTS"
    assert eip["uuid"] in busy.value.details["dependents"]["Eip"]

    # deleting the EIP frees the VIP, which then serves another EIP
    await api("DeleteEip", uuid="web-eip")
    vip_now = (await api("QueryVip", conditions=["name=vip1"]))["inventories"][0]
    assert vip_now["useFor"] is None
    await consistent(api)
    await api("CreateEip", name="eip2", vipUuid="vip1")

    # cascade: the EIP goes, then the VIP, then its address
    await api("DeleteVip", uuid="vip1", cascade=True)
    assert (await api("QueryEip"))["inventories"] == []
    assert (await api("QueryVip"))["inventories"] == []
    assert await used_ips(api, nets["public"]) == []


async def test_eip_references_are_checked(env: tuple[Api, dict[str, str]]) -> None:
    api, _ = env
    with pytest.raises(NotFound) as missing:
        await api("CreateEip", name="e", vipUuid="nope")
    assert missing.value.field == "vipUuid"
    with pytest.raises(NotFound) as missing_l3:
        await api("CreateVip", name="v", l3NetworkUuid="nope")
    assert missing_l3.value.field == "l3NetworkUuid"


async def test_deleting_the_l3_network_cascades_to_vips(
    env: tuple[Api, dict[str, str]],
) -> None:
    api, _ = env
    await api("CreateVip", name="vip1", l3NetworkUuid="public")
    await api("CreateEip", name="eip1", vipUuid="vip1")
    with pytest.raises(Conflict):
        await api("DeleteL3Network", uuid="public")
    await api("DeleteL3Network", uuid="public", cascade=True)
    assert (await api("QueryVip"))["inventories"] == []
    assert (await api("QueryEip"))["inventories"] == []
    assert (await api("QueryUsedIp"))["inventories"] == []
