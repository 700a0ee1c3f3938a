"""The zcli grammar over a small handmade catalogue: no node, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from zcli.catalogue import Catalogue, camel, kebab
from zcli.options import Options, parse_globals
from zcli.parser import ApiCall, Help, Login, Logout, UsageError, parse

QUERY_PARAMS: list[dict[str, Any]] = [
    {
        "name": "conditions",
        "required": False,
        "type": "list",
        "items": {"type": "any"},
        "default": [],
    },
    {"name": "limit", "required": False, "type": "int", "default": 1000},
    {"name": "start", "required": False, "type": "int", "default": 0},
    {"name": "count", "required": False, "type": "bool", "default": False},
    {"name": "replyWithCount", "required": False, "type": "bool", "default": False},
    {"name": "sortBy", "required": False, "type": "string", "nullable": True, "default": None},
    {
        "name": "sortDirection",
        "required": False,
        "type": "enum",
        "enum": ["asc", "desc"],
        "default": "asc",
    },
    {
        "name": "fields",
        "required": False,
        "type": "list",
        "items": {"type": "string"},
        "default": None,
    },
]
TAGS = [
    {
        "name": "resourceUuid",
        "required": False,
        "type": "string",
        "nullable": True,
        "default": None,
    },
    {"name": "description", "required": False, "type": "string", "nullable": True, "default": None},
    {
        "name": "systemTags",
        "required": False,
        "type": "list",
        "items": {"type": "string"},
        "default": [],
    },
]


def _api(
    name: str,
    resource: str | None,
    verb: str | None,
    params: list[dict[str, Any]],
    long: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "resource": resource,
        "verb": verb,
        "summary": f"{name} summary",
        "doc": "",
        "long": long,
        "params": params,
    }


def _req(name: str, typ: str = "string", **kw: Any) -> dict[str, Any]:
    return {"name": name, "required": True, "type": typ, "doc": f"the {name}", **kw}


CATALOGUE: dict[str, Any] = {
    "apis": [
        _api("CreateZone", "Zone", "create", [_req("name"), *TAGS]),
        _api(
            "UpdateZone",
            "Zone",
            "update",
            [_req("uuid"), {"name": "name", "required": False, "type": "string", "default": None}],
        ),
        _api(
            "DeleteZone",
            "Zone",
            "delete",
            [
                _req("uuid"),
                {"name": "cascade", "required": False, "type": "bool", "default": False},
            ],
        ),
        _api(
            "ChangeZoneState",
            "Zone",
            "change-state",
            [_req("uuid"), _req("stateEvent", "enum", enum=["enable", "disable"])],
        ),
        _api("QueryZone", "Zone", "query", QUERY_PARAMS),
        _api(
            "CreateL2NoVlanNetwork",
            "L2Network",
            "create",
            [_req("name"), _req("zoneUuid", resource="Zone")],
        ),
        _api(
            "CreateL2VlanNetwork",
            "L2Network",
            "create",
            [_req("name"), _req("zoneUuid"), _req("vlan", "int")],
        ),
        _api("QueryL2Network", "L2Network", "query", QUERY_PARAMS),
        _api(
            "AttachL2NetworkToCluster",
            "L2Network",
            "attach",
            [_req("l2NetworkUuid", resource="L2Network"), _req("clusterUuid", resource="Cluster")],
        ),
        _api("StartVmInstance", "VmInstance", "start", [_req("uuid")], long=True),
        _api("QueryVmInstance", "VmInstance", "query", QUERY_PARAMS),
        _api("GetJob", "Job", "get", [_req("uuid")]),
        _api("QueryJob", "Job", "query", QUERY_PARAMS),
        _api("Ping", None, None, []),
    ],
    "resources": [
        {
            "name": "Zone",
            "cli": "zone",
            "columns": ["uuid", "name", "state"],
            "fields": [
                {"name": "uuid", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "state", "type": "string", "enum": ["Enabled", "Disabled"]},
            ],
            "joins": [],
        },
        {
            "name": "L2Network",
            "cli": "l2-network",
            "columns": ["uuid", "name", "zoneUuid"],
            "fields": [],
            "joins": [],
        },
        {
            "name": "VmInstance",
            "cli": "vm-instance",
            "columns": ["uuid", "name", "state"],
            "fields": [],
            "joins": [],
        },
        {
            "name": "Job",
            "cli": "job",
            "columns": ["uuid", "name", "state"],
            "fields": [],
            "joins": [],
        },
    ],
    "errorKinds": {"NotFound": 3},
}


@pytest.fixture
def cat() -> Catalogue:
    return Catalogue(CATALOGUE, "h1")


def call(tokens: str, cat: Catalogue) -> ApiCall:
    cmd = parse(tokens.split(), cat)
    assert isinstance(cmd, ApiCall)
    return cmd


def test_names() -> None:
    assert kebab("CreateL2VlanNetwork") == "create-l2-vlan-network"
    assert kebab("VmInstance") == "vm-instance"
    assert camel("sort-by") == "sortBy"
    assert camel("l3-network-uuid") == "l3NetworkUuid"
    assert camel("zoneUuid") == "zoneUuid"


def test_raw_form_passes_strings(cat: Catalogue) -> None:
    cmd = call("api CreateZone name=z1 description=a=b", cat)
    assert (cmd.api, cmd.args, cmd.action) == (
        "CreateZone",
        {"name": "z1", "description": "a=b"},
        "call",
    )


def test_raw_query_splits_conditions_from_params(cat: Catalogue) -> None:
    cmd = call(
        "api QueryZone name=z1 count=true state!=Disabled name~=z% uuid?=a,b"
        " description=null limit=5",
        cat,
    )
    assert cmd.action == "list"
    assert cmd.args == {
        "conditions": ["name=z1", "state!=Disabled", "name~=z%", "uuid?=a,b", "description=null"],
        "count": "true",
        "limit": "5",
    }


def test_query_param_with_another_operator_is_a_usage_error(cat: Catalogue) -> None:
    with pytest.raises(UsageError) as exc:
        parse(["zone", "list", "limit>5"], cat)
    assert exc.value.field == "limit"


def test_resource_form_option_and_key_value_are_the_same(cat: Catalogue) -> None:
    a = call("zone create --name z1 --resource-uuid 0123 --system-tags a::b", cat)
    b = call("zone create name=z1 resourceUuid=0123 systemTags=a::b", cat)
    c = parse(["zone", "create", "--name=z1", "--resourceUuid=0123", "--system-tags", "a::b"], cat)
    assert (
        a.args == b.args == c.args == {"name": "z1", "resourceUuid": "0123", "systemTags": "a::b"}
    )
    assert a.resource == "Zone"


def test_positional_fills_uuid_else_name(cat: Catalogue) -> None:
    assert call("zone delete z1 --cascade", cat).args == {"uuid": "z1", "cascade": True}
    assert call("zone delete z1 --cascade false", cat).args == {"uuid": "z1", "cascade": "false"}
    assert call("zone change-state z1 --state-event disable", cat).args == {
        "uuid": "z1",
        "stateEvent": "disable",
    }
    assert call("zone create z1", cat).args == {"name": "z1"}
    several = call("zone delete z1 z2 --cascade", cat)  # several targets: one call each
    assert several.each() == [{"uuid": "z1", "cascade": True}, {"uuid": "z2", "cascade": True}]
    with pytest.raises(UsageError):
        parse(["zone", "create", "z1", "z2"], cat)  # names of a create are not targets
    with pytest.raises(UsageError):
        parse(["zone", "delete", "z1", "uuid=z2"], cat)


def test_shared_verb_becomes_the_kebab_api_name(cat: Catalogue) -> None:
    l2 = cat.resource("l2")
    assert l2 is not None and l2.cli == "l2-network"
    assert "create" not in l2.verbs
    assert (
        call("l2 create-l2-vlan-network --name n --zone-uuid z1 --vlan 10", cat).api
        == "CreateL2VlanNetwork"
    )
    assert call("l2-network create-l2-no-vlan-network n --zone-uuid z1", cat).args == {
        "name": "n",
        "zoneUuid": "z1",
    }


def test_positional_fills_the_reference_to_the_own_resource(cat: Catalogue) -> None:
    cmd = call("l2 attach net1 --cluster-uuid c1", cat)
    assert (cmd.api, cmd.args) == (
        "AttachL2NetworkToCluster",
        {"l2NetworkUuid": "net1", "clusterUuid": "c1"},
    )


def test_builtin_verbs_win_over_an_api_verb(cat: Catalogue) -> None:
    job = cat.resource("job")
    assert job is not None and job.verbs == {"get-job": "GetJob"}
    assert call("job get 0123456789abcdef0123456789abcdef", cat).api == "QueryJob"


def test_aliases_and_long_apis(cat: Catalogue) -> None:
    cmd = call("vm start web1", cat)
    assert (cmd.api, cmd.args, cmd.long) == ("StartVmInstance", {"uuid": "web1"}, True)
    assert call("VmInstance start web1", cat).api == "StartVmInstance"


def test_list_conditions_and_options(cat: Catalogue) -> None:
    cmd = call("zone list name~=z% --count --limit 5 --sort-by name state=Enabled", cat)
    assert cmd.action == "list" and cmd.api == "QueryZone"
    assert cmd.args == {
        "conditions": ["name~=z%", "state=Enabled"],
        "count": True,
        "limit": "5",
        "sortBy": "name",
    }
    desc = call("zone list --sort-by -name", cat)
    assert desc.args == {"sortBy": "name", "sortDirection": "desc"}


def test_get_by_uuid_or_name(cat: Catalogue) -> None:
    uuid = "0123456789abcdef0123456789abcdef"
    by_uuid = call(f"zone get {uuid}", cat)
    assert (
        by_uuid.action == "get"
        and by_uuid.args == {"conditions": [f"uuid={uuid}"]}
        and by_uuid.target == uuid
    )
    assert call("zone get z1", cat).args == {"conditions": ["name=z1"]}
    with pytest.raises(UsageError):
        parse(["zone", "get"], cat)


def test_unknown_parameter_names_the_field_and_suggests(cat: Catalogue) -> None:
    with pytest.raises(UsageError) as exc:
        parse(["zone", "create", "--nmae", "z1"], cat)
    assert exc.value.field == "nmae"
    assert exc.value.exit_status == 2
    assert "did you mean name?" in exc.value.message


def test_unknown_resource_and_verb_say_what_is_valid(cat: Catalogue) -> None:
    with pytest.raises(UsageError) as exc:
        parse(["zoen", "list"], cat)
    assert "did you mean zone?" in exc.value.message
    with pytest.raises(UsageError) as exc:
        parse(["zone", "crate"], cat)
    assert "did you mean create?" in exc.value.message and "change-state" in exc.value.message
    with pytest.raises(UsageError) as exc:
        parse(["api", "CreateZon"], cat)
    assert "CreateZone" in exc.value.message


def test_value_required_and_repeats(cat: Catalogue) -> None:
    with pytest.raises(UsageError) as exc:
        parse(["zone", "create", "--name"], cat)
    assert exc.value.field == "name"
    with pytest.raises(UsageError):
        parse(["zone", "create", "name=a", "name=b"], cat)
    tags = call("zone create z --system-tags a --system-tags b", cat).args["systemTags"]
    assert tags == ["a", "b"]


def test_help_login_logout(cat: Catalogue) -> None:
    assert parse([], cat) == Help([])
    assert parse(["help", "zone"], cat) == Help(["zone"])
    assert parse(["zone", "--help"], cat) == Help(["zone"])
    assert parse(["zone", "create", "-h"], cat) == Help(["zone", "create"])
    assert parse(["api", "CreateZone", "--help"], cat) == Help(["api", "CreateZone"])
    assert parse(["login", "--account", "a", "--password=p"], cat) == Login("a", "p")
    assert parse(["logout"], cat) == Logout()
    with pytest.raises(UsageError):
        parse(["login", "--password", "p"], cat)


def test_global_options() -> None:
    opts, rest = parse_globals(
        ["-o", "json", "-c", "uuid,name", "-cstate", "-q", "--timeout=2.5", "zone", "list", "-q"]
    )
    assert (opts.output, opts.columns, opts.quiet, opts.timeout) == (
        "json",
        ["uuid", "name", "state"],
        True,
        2.5,
    )
    assert rest == ["zone", "list"]  # options anywhere: the -q after the command too
    assert parse_globals(["--help"])[1] == ["help"]
    with pytest.raises(UsageError):
        parse_globals(["-o", "jsn"])
    with pytest.raises(UsageError):
        parse_globals(["--bogus"])
    line, rest = parse_globals(
        ["-c", "name", "zone", "list"], Options(columns=["uuid"]), in_batch=True
    )
    assert line.columns == ["name"] and rest == ["zone", "list"]
    with pytest.raises(UsageError):
        parse_globals(["--endpoint", "unix:/x", "zone", "list"], Options(), in_batch=True)
