"""Tenant isolation: a normal account can neither see nor change another account's resources.

Two tenants, alice and bob, each own one resource of every owned type (users, security
groups and rules, VMs with their NICs, volumes and snapshots, VIPs, EIPs, tags, jobs) in one
simulator cloud. Then, derived from the node's own catalogue and registry:

* every API that is open to normal accounts and names an isolated resource (a reference
  parameter, or the ``uuid`` of the API's own resource) is called by bob with alice's
  resource in that parameter and bob's own resources everywhere else: it must answer
  NotFound *for that parameter* (so alice's resource is indistinguishable from none), and no
  row of any table may change;
* every ``Query<Type>`` of an isolated type shows bob none of alice's rows, also when asked
  by UUID, and a query through any join to an isolated type cannot match alice's rows;
* admin-only types (sessions, hosts...) refuse bob's queries outright, and every parameter
  of an API open to bob that names one (``hostUuid``, ``clusterUuid``,
  ``primaryStorageUuid``...: placement is an admin's choice) is refused with the same answer
  whether the value names a real resource, by UUID or name, or nothing at all (no existence
  oracle), before anything changes;
* shared types (images, L3 networks...) are visible but every API changing them is
  admin-only (``test_security_sessions`` checks those refuse bob).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import GiB, build_cloud
from zmn.api.errors import NotFound, PermissionDenied, ZmnError
from zmn.api.message import Param, params_of
from zmn.client import AsyncClient
from zmn.core.config import BootConfig
from zmn.core.db import Base, new_uuid
from zmn.core.node import Node

in_module_loop = pytest.mark.asyncio(loop_scope="module")
# Tables whose rows change on their own (heartbeats, session refresh, the audit trail itself).
VOLATILE = {"audit_log", "session", "management_node"}


@dataclass
class Catalogue:
    isolated: set[str]  # resource types a normal account sees only its own rows of
    admin_only: set[str]
    shared: set[str]
    apis: dict[str, Any]
    expansions: dict[str, dict[str, str]]  # type -> join name -> target type


def read_catalogue() -> Catalogue:
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(BootConfig.load(Path(tmp), env={}))
        try:
            node.load_services()
            types = node.resources.types
            return Catalogue(
                {n for n, rt in types.items() if rt.owned or rt.access_filter},
                {n for n, rt in types.items() if rt.admin_only},
                {
                    n
                    for n, rt in types.items()
                    if not (rt.owned or rt.access_filter or rt.admin_only)
                },
                dict(node.apis.apis),
                {n: {e.name: e.target for e in rt.expansions.values()} for n, rt in types.items()},
            )
        finally:
            node.db.dispose()


CAT = read_catalogue()


def reference_params(api_name: str) -> list[tuple[str, str]]:
    """(parameter, isolated type) pairs of an API a normal account may call."""
    cls = CAT.apis[api_name]
    spec = cls.__api__
    if spec.public or spec.internal or spec.admin or spec.verb == "query":
        return []
    out = [(p.name, p.ref) for p in params_of(cls) if p.ref in CAT.isolated]
    own = spec.resource in CAT.isolated and spec.verb != "create"
    if own and any(p.name == "uuid" for p in params_of(cls)):
        out.append(("uuid", spec.resource))
    return [(name, ref) for name, ref in out if ref is not None]


CASES = [
    pytest.param(api, param, ref, id=f"{api}.{param}")
    for api in sorted(CAT.apis)
    for param, ref in reference_params(api)
]
# Parameters holding a resource without a Ref() (checked by their handler, not the core).
HANDLER_CASES = [
    ("CreateUserTag", "resourceUuid", "VmInstance", {"resourceType": "VmInstance", "tag": "t"}),
    ("CreateUserTag", "resourceUuid", "Volume", {"resourceType": "Volume", "tag": "t"}),
    ("CreateUserTag", "resourceUuid", "Account", {"resourceType": "Account", "tag": "t"}),
    ("CreateUserTag", "resourceUuid", "SecurityGroup", {"resourceType": "SecurityGroup", "tag": "t"}),
    ("CreateSystemTag", "resourceUuid", "VmInstance", {"resourceType": "VmInstance", "tag": "hostname::x"}),
    ("DeleteTag", "uuid", "UserTag", {}),
    ("AddSecurityGroupRule", "remoteSecurityGroupUuid", "SecurityGroup",
     {"securityGroupUuid": "@SecurityGroup", "type": "Ingress", "protocol": "TCP", "startPort": 22}),
]  # fmt: skip


@dataclass
class Tenant:
    name: str
    session: str
    client: AsyncClient | None = None
    owned: dict[str, str] = field(default_factory=dict)  # type -> UUID of one of its rows
    named: dict[str, str] = field(default_factory=dict)  # type -> name of that row


@dataclass
class World:
    node: Node
    api: Api
    shared: dict[str, str]
    alice: Tenant
    bob: Tenant


async def populate(tcp: str, t: Tenant, shared: dict[str, str]) -> None:
    """One resource of every owned type, made by the tenant itself."""
    n = t.name
    async with AsyncClient(tcp, t.session) as c:

        async def make(type_name: str, api_name: str, **args: Any) -> dict[str, Any]:
            inv: dict[str, Any] = (await c.call(api_name, args))["inventory"]
            t.owned[type_name] = inv["uuid"]
            if "name" in inv:
                t.named[type_name] = inv["name"]
            return inv

        await make("User", "CreateUser", name=f"{n}-user", password=f"{n}-user-password")
        sg = await make("SecurityGroup", "CreateSecurityGroup", name=f"{n}-sg")
        rules = await c.call(
            "AddSecurityGroupRule",
            {
                "securityGroupUuid": sg["uuid"],
                "type": "Ingress",
                "protocol": "TCP",
                "startPort": 22,
            },
        )
        t.owned["SecurityGroupRule"] = rules["inventory"]["rules"][0]["uuid"]
        await c.call(
            "AttachSecurityGroupToL3Network",
            {"securityGroupUuid": sg["uuid"], "l3NetworkUuid": shared["l3"]},
        )
        reply = await c.request(
            "CreateVmInstance",
            {
                "name": f"{n}-vm",
                "imageUuid": shared["image"],
                "instanceOfferingUuid": shared["small"],
                "l3NetworkUuids": [shared["l3"]],
            },
        )
        vm = reply["result"]["inventory"]
        t.owned["VmInstance"], t.named["VmInstance"] = vm["uuid"], vm["name"]
        t.owned["Job"] = reply["job"]
        t.owned["VmNic"] = vm["vmNics"][0]["uuid"]
        await c.call(
            "AddVmNicToSecurityGroup",
            {"securityGroupUuid": sg["uuid"], "vmNicUuids": [t.owned["VmNic"]]},
        )
        vol = await make("Volume", "CreateDataVolume", name=f"{n}-data", diskSize=GiB)
        await c.call(
            "AttachDataVolumeToVm", {"volumeUuid": vol["uuid"], "vmInstanceUuid": vm["uuid"]}
        )
        await make(
            "VolumeSnapshot", "CreateVolumeSnapshot", volumeUuid=vol["uuid"], name=f"{n}-snap"
        )
        vip = await make("Vip", "CreateVip", name=f"{n}-vip", l3NetworkUuid=shared["pub"])
        await make("Eip", "CreateEip", name=f"{n}-eip", vipUuid=vip["uuid"])
        tag = await c.call(
            "CreateUserTag", {"resourceType": "VmInstance", "resourceUuid": vm["uuid"], "tag": n}
        )
        t.owned["UserTag"] = tag["inventory"]["uuid"]
        tag = await c.call(
            "CreateSystemTag",
            {"resourceType": "VmInstance", "resourceUuid": vm["uuid"], "tag": f"hostname::{n}"},
        )
        t.owned["SystemTag"] = tag["inventory"]["uuid"]
        account = (await c.call("QueryAccount"))["inventories"][0]
        t.owned["Account"], t.named["Account"] = account["uuid"], account["name"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory, cheap_hashes_module: Any
) -> AsyncIterator[World]:
    home = tmp_path_factory.mktemp("security-isolation") / "home"
    async with running_node(home, conf={"api.tcp.listen": "127.0.0.1:0"}) as (node, _server):
        api = Api(node)
        cloud = await build_cloud(api)
        shared = dict(cloud.u)
        l2 = await api(
            "CreateL2NoVlanNetwork",
            name="pub-l2",
            zoneUuid=shared["zone"],
            physicalInterface="eth1",
        )
        await api(
            "AttachL2NetworkToCluster",
            l2NetworkUuid=l2["inventory"]["uuid"],
            clusterUuid=shared["cluster"],
        )
        pub = await api("CreateL3Network", name="pub", l2NetworkUuid=l2["inventory"]["uuid"])
        shared["pub"] = pub["inventory"]["uuid"]
        await api(
            "AddIpRange", name="pub-range", l3NetworkUuid=shared["pub"], startIp="192.168.9.10",
            endIp="192.168.9.99", netmask="255.255.255.0", gateway="192.168.9.1",
        )  # fmt: skip
        tcp = next(e for e in node.endpoints if e.startswith("tcp://"))
        tenants = []
        for name in ("alice", "bob"):
            await api("CreateAccount", name=name, password=f"{name}-password")
            async with AsyncClient(tcp) as c:
                reply = await c.call(
                    "LogInByAccount", {"accountName": name, "password": f"{name}-password"}
                )
            tenant = Tenant(name, reply["inventory"]["uuid"])
            await populate(tcp, tenant, shared)
            tenants.append(tenant)
        alice, bob = tenants
        assert set(alice.owned) >= CAT.isolated - {"AuditLog"}, CAT.isolated - set(alice.owned)
        bob.client = await AsyncClient(tcp, bob.session).connect()
        try:
            yield World(node, api, shared, alice, bob)
        finally:
            await bob.client.close()


def digest(node: Node) -> dict[str, str]:
    """A hash of every row of every table (but the volatile ones): any write shows."""
    out = {}
    with node.db.tx() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in VOLATILE:
                continue
            rows = sorted(repr(tuple(r)) for r in s.execute(select(table)))
            out[table.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return out


def filler(p: Param, world: World) -> Any:
    """A valid value for a required parameter, from bob's or the shared resources."""
    if p.ref is not None:
        uuid = world.bob.owned.get(p.ref) or world.shared.get(SHARED_KEYS.get(p.ref, ""))
        assert uuid, f"no {p.ref} to fill {p.name}"
        return [uuid] if p.type["type"] == "list" else uuid
    kind = p.type["type"]
    if kind == "enum":
        return p.type["enum"][0]
    return {"int": 1, "bool": False, "float": 1.0, "list": [], "map": {}}.get(kind, "bob-value-1")


SHARED_KEYS = {
    "L3Network": "l3",
    "Image": "image",
    "InstanceOffering": "small",
    "DiskOffering": "d10",
    "Zone": "zone",
    "Cluster": "cluster",
    "Host": "h1",
    "PrimaryStorage": "ps",
    "BackupStorage": "bs",
    "L2Network": "l2",
    "IpRange": "range",
}


async def assert_hidden(world: World, api_name: str, param: str, args: dict[str, Any]) -> None:
    """bob's call fails as if alice's resource did not exist, and changes nothing."""
    assert world.bob.client is not None
    before = digest(world.node)
    with pytest.raises(ZmnError) as err:
        await world.bob.client.call(api_name, args)
    e = err.value
    hidden = isinstance(e, NotFound) and e.field in (param, None) and e.code != "API.NOT_FOUND"
    assert hidden or isinstance(e, PermissionDenied), f"{api_name}.{param}: {e.code}: {e}"
    assert digest(world.node) == before, f"{api_name} changed something for bob"


@in_module_loop
@pytest.mark.parametrize(("api_name", "param", "ref"), CASES)
async def test_bob_cannot_act_on_alices_resource(
    world: World, api_name: str, param: str, ref: str
) -> None:
    cls = CAT.apis[api_name]
    args = {p.name: filler(p, world) for p in params_of(cls) if p.required}
    theirs = world.alice.owned[ref]
    is_list = next(p for p in params_of(cls) if p.name == param).type["type"] == "list"
    args[param] = [theirs] if is_list else theirs
    await assert_hidden(world, api_name, param, args)
    if ref in world.alice.named and not is_list:  # by name as well as by UUID
        args[param] = world.alice.named[ref]
        await assert_hidden(world, api_name, param, args)


@in_module_loop
@pytest.mark.parametrize(("api_name", "param", "ref", "extra"), HANDLER_CASES)
async def test_bob_cannot_reach_alices_resource_through_a_handler(
    world: World, api_name: str, param: str, ref: str, extra: dict[str, Any]
) -> None:
    args = {k: world.bob.owned[v[1:]] if str(v).startswith("@") else v for k, v in extra.items()}
    args[param] = world.alice.owned[ref]
    await assert_hidden(world, api_name, param, args)


@in_module_loop
@pytest.mark.parametrize("type_name", sorted(CAT.isolated))
async def test_bob_queries_none_of_alices_rows(world: World, type_name: str) -> None:
    assert world.bob.client is not None
    bob = world.bob.client
    rows = (await bob.call(f"Query{type_name}", {"limit": 100_000}))["inventories"]
    mine = {r.get("uuid") for r in rows}
    theirs = world.alice.owned.get(type_name)
    if type_name == "AuditLog":
        assert rows and {r["accountName"] for r in rows} == {"bob"}
        return
    assert theirs and theirs not in mine
    assert world.bob.owned[type_name] in mine  # the query works: bob sees his own
    found = await bob.call(f"Query{type_name}", {"conditions": [f"uuid={theirs}"], "count": True})
    assert found["total"] == 0
    everyone = await world.api(f"Query{type_name}", conditions=[f"uuid={theirs}"], count=True)
    assert everyone["total"] == 1  # it is there: bob just cannot see it


JOIN_CASES = [
    pytest.param(source, join, target, id=f"{source}.{join}")
    for source in sorted(CAT.expansions)
    if source not in CAT.admin_only
    for join, target in sorted(CAT.expansions[source].items())
    if target in CAT.isolated and target != "AuditLog"
]


@in_module_loop
@pytest.mark.parametrize(("source", "join", "target"), JOIN_CASES)
async def test_no_join_matches_alices_rows(
    world: World, source: str, join: str, target: str
) -> None:
    assert world.bob.client is not None
    condition = f"{join}.uuid={world.alice.owned[target]}"
    found = await world.bob.client.call(
        f"Query{source}", {"conditions": [condition], "count": True}
    )
    assert found["total"] == 0, f"Query{source} {condition} matched for bob"


@in_module_loop
@pytest.mark.parametrize("type_name", sorted(CAT.admin_only))
async def test_admin_only_types_refuse_normal_accounts(world: World, type_name: str) -> None:
    assert world.bob.client is not None
    with pytest.raises(PermissionDenied) as err:
        await world.bob.client.call(f"Query{type_name}")
    assert err.value.code == "IDENTITY.ADMIN_ONLY"


@in_module_loop
@pytest.mark.parametrize("type_name", ["Image", "L3Network", "Zone", "InstanceOffering"])
async def test_shared_types_are_visible_but_changed_only_by_admins(
    world: World, type_name: str
) -> None:
    assert type_name in CAT.shared
    assert world.bob.client is not None
    rows = (await world.bob.client.call(f"Query{type_name}"))["inventories"]
    assert rows  # shared: every account picks images, networks and offerings from them
    changing = [
        name
        for name, cls in CAT.apis.items()
        if cls.__api__.resource == type_name and cls.__api__.mutating
    ]
    assert changing and all(CAT.apis[name].__api__.admin for name in changing), changing


def _open_to_tenants(cls: Any) -> bool:
    spec = cls.__api__
    return not (spec.public or spec.internal or spec.admin or spec.verb == "query")


ADMIN_ONLY_CASES = [
    pytest.param(api, p.name, p.ref, id=f"{api}.{p.name}")
    for api, cls in sorted(CAT.apis.items())
    if _open_to_tenants(cls)
    for p in params_of(cls)
    if p.ref in CAT.admin_only
]


def test_the_admin_only_parameters_are_the_known_placement_hints() -> None:
    """The catalogue-wide list below is what the next test covers; a new one is a decision."""
    found = {(c.values[0], c.values[1]) for c in ADMIN_ONLY_CASES}
    assert found == {
        ("CreateDataVolume", "primaryStorageUuid"),
        ("CreateVmInstance", "clusterUuid"),
        ("CreateVmInstance", "hostUuid"),
        ("CreateVmInstance", "primaryStorageUuidForRootVolume"),
        ("MigrateVm", "hostUuid"),
        ("StartVmInstance", "clusterUuid"),
        ("StartVmInstance", "hostUuid"),
    }


@in_module_loop
@pytest.mark.parametrize(("api_name", "param", "ref"), ADMIN_ONLY_CASES)
async def test_bob_cannot_name_or_probe_admin_only_resources(
    world: World, api_name: str, param: str, ref: str
) -> None:
    assert world.bob.client is not None
    cls = CAT.apis[api_name]
    args = {p.name: filler(p, world) for p in params_of(cls) if p.required}
    is_list = next(p for p in params_of(cls) if p.name == param).type["type"] == "list"
    real = world.shared[SHARED_KEYS[ref]]
    real_name = (await world.api(f"Query{ref}", conditions=[f"uuid={real}"]))["inventories"][0][
        "name"
    ]
    answers = set()
    for value in (real, real_name, new_uuid(), f"no-such-{ref.lower()}"):
        args[param] = [value] if is_list else value
        before = digest(world.node)
        with pytest.raises(ZmnError) as err:
            await world.bob.client.call(api_name, args)
        assert digest(world.node) == before, f"{api_name} changed something for bob"
        e = err.value
        answers.add((type(e).__name__, e.code, e.field, e.message))
    # one answer for a real host, cluster or storage and for none: nothing to probe
    assert len(answers) == 1, answers
    kind, code, field_name, _ = answers.pop()
    assert (kind, code, field_name) == ("PermissionDenied", "IDENTITY.ADMIN_ONLY", param)
