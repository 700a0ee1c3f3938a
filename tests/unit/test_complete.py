"""The completion engine over a small handmade catalogue: no node, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from zcli.catalogue import Catalogue
from zcli.complete import Candidate, Engine

Z1, Z2 = "a1" + "0" * 30, "b2" + "0" * 30
C1 = "c3" + "0" * 30


def _field(name: str, typ: str = "string", **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": typ, **kw}


def _param(name: str, typ: str = "string", required: bool = False, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": typ, "required": required, "doc": f"the {name}", **kw}


QUERY_PARAMS = [
    _param("conditions", "list", items={"type": "any"}, default=[]),
    _param("limit", "int", default=1000),
    _param("count", "bool", default=False),
    _param("sortBy", nullable=True, default=None),
    _param("sortDirection", "enum", enum=["asc", "desc"], default="asc"),
    _param("fields", "list", items={"type": "string"}, default=None),
]
COMMON = [_field("uuid"), _field("name"), _field("description")]


def _query(resource: str) -> dict[str, Any]:
    return {"name": f"Query{resource}", "resource": resource, "verb": "query",
            "summary": f"query {resource}", "params": QUERY_PARAMS}  # fmt: skip


def _api(name: str, resource: str | None, verb: str | None, params: list[dict[str, Any]]):
    return {"name": name, "resource": resource, "verb": verb, "summary": f"{name} it",
            "params": params}  # fmt: skip


def _res(name: str, cli: str, fields: list[Any], joins: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "cli": cli,
        "summary": f"a {name}",
        "fields": fields,
        "joins": [{"name": j, "resource": r} for j, r in joins.items()],
    }


REQ = {"required": True}
CATALOGUE: dict[str, Any] = {
    "resources": [
        _res("Zone", "zone", [*COMMON, _field("state", enum=["Enabled", "Disabled"])],
             {"cluster": "Cluster", "host": "Host"}),
        _res("Cluster", "cluster", [*COMMON, _field("zoneUuid", resource="Zone"),
                                    _field("hypervisorType", enum=["Simulator", "KVM"])],
             {"zone": "Zone", "host": "Host"}),
        _res("Host", "host", [*COMMON, _field("clusterUuid", resource="Cluster"),
                              _field("cpuNum", "int"), _field("managementIp")],
             {"zone": "Zone", "cluster": "Cluster"}),
        _res("VmInstance", "vm-instance", [*COMMON, _field("state", enum=["Running", "Stopped"])],
             {"vmNics": "VmNic"}),
        _res("VmNic", "vm-nic",
             [_field("uuid"), _field("ip"), _field("l3NetworkUuid", resource="L3Network")],
             {"l3Network": "L3Network", "vmInstance": "VmInstance"}),
        _res("L3Network", "l3-network", [*COMMON], {}),
        _res("Account", "account", [*COMMON], {}),
    ],
    "apis": [
        _query("Zone"), _query("Cluster"), _query("Host"), _query("VmInstance"),
        _query("Account"),
        _api("CreateZone", "Zone", "create", [_param("name", **REQ), _param("description")]),
        _api("DeleteZone", "Zone", "delete",
             [_param("uuid", **REQ), _param("cascade", "bool", default=False)]),
        _api("CreateCluster", "Cluster", "create", [
            _param("name", **REQ), _param("zoneUuid", **REQ, resource="Zone"),
            _param("hypervisorType", "enum", **REQ, enum=["Simulator", "KVM"]),
            _param("systemTags", "list", items={"type": "string"}, default=[])]),
        _api("AttachThing", "Cluster", "attach", [
            _param("clusterUuid", **REQ, resource="Cluster"),
            _param("zoneUuids", "list", **REQ, resource="Zone", items={"type": "string"})]),
        _api("CreateAccount", "Account", "create",
             [_param("name", **REQ), _param("password", **REQ, secret=True)]),
        _api("Ping", None, None, []),
    ],
    "query": {"operators": []},
}  # fmt: skip

NAMES = {
    "Zone": [(Z1, "z1"), (Z2, "zeta")],
    "Cluster": [(C1, "c1")],
    "Account": [("d" * 32, "admin")],
}


@pytest.fixture
def cat() -> Catalogue:
    return Catalogue(CATALOGUE)


def texts(cands: list[Candidate]) -> list[str]:
    return [c.text for c in cands]


def shell(cat: Catalogue, line: str) -> list[Candidate]:
    words = line.split(" ")
    return Engine(cat, lambda t: NAMES.get(t, []), interactive=True).complete(words)


def script(cat: Catalogue, line: str) -> list[Candidate]:
    words = line.split(" ")
    return Engine(cat, lambda t: NAMES.get(t, []), join_dot=True).complete(words)


# --------------------------------------------------------------------------- commands


def test_command_word_lists_resources_commands_and_shell_only_words(cat: Catalogue) -> None:
    top = texts(script(cat, ""))
    assert {"zone", "cluster", "host", "api", "help", "login", "logout", "shell"} <= set(top)
    assert "exit" not in top and "QueryZone" not in top
    interactive = texts(shell(cat, ""))
    assert "exit" in interactive and "shell" not in interactive and "QueryZone" in interactive


def test_api_names_match_by_substring_prefix_first(cat: Catalogue) -> None:
    assert texts(shell(cat, "api Query")) == [
        "QueryAccount", "QueryCluster", "QueryHost", "QueryVmInstance", "QueryZone",
    ]  # fmt: skip
    assert texts(shell(cat, "api zone")) == ["CreateZone", "DeleteZone", "QueryZone"]
    # in the shell the api keyword is optional: resource words first, then API names
    assert texts(shell(cat, "zon")) == ["zone", "CreateZone", "DeleteZone", "QueryZone"]
    assert texts(shell(cat, "Que"))[0] == "QueryAccount"


def test_global_options_and_their_values(cat: Catalogue) -> None:
    assert texts(script(cat, "--end")) == ["--endpoint"]
    assert texts(script(cat, "-o ")) == ["table", "json", "yaml", "csv", "value"]
    assert texts(script(cat, "-o j")) == ["json"]
    assert texts(script(cat, "-o json zone li")) == ["list"]
    assert script(cat, "--endpoint ") == []


def test_verbs_of_a_resource(cat: Catalogue) -> None:
    assert texts(script(cat, "zone ")) == ["list", "get", "create", "delete"]
    assert texts(script(cat, "cluster c")) == ["create"]
    assert texts(script(cat, "zone -")) == ["--help"]


def test_help_topics(cat: Catalogue) -> None:
    assert "cluster" in texts(script(cat, "help cl"))
    assert texts(script(cat, "help api CreateZ")) == ["CreateZone"]
    assert texts(script(cat, "help zone d")) == ["delete"]
    assert "CreateZone" in texts(shell(cat, "help Create"))


def test_nothing_after_words_that_take_no_arguments(cat: Catalogue) -> None:
    assert script(cat, "logout ") == [] and shell(cat, "exit ") == []
    assert script(cat, "nosuch ") == [] and script(cat, "api NoSuchApi ") == []


# --------------------------------------------------------------------------- parameters


def test_parameters_as_key_equals_and_as_options(cat: Catalogue) -> None:
    assert texts(script(cat, "api CreateCluster ")) == [
        "name=", "zoneUuid=", "hypervisorType=", "systemTags=",
    ]  # fmt: skip
    given = texts(script(cat, "api CreateCluster name=x "))
    assert "name=" not in given and "zoneUuid=" in given
    assert "systemTags=" in texts(script(cat, "api CreateCluster systemTags=a "))
    assert texts(script(cat, "cluster create --zone")) == ["--zone-uuid"]
    assert "--name" not in texts(script(cat, "cluster create --name x --"))
    assert all(c.nospace for c in script(cat, "api CreateCluster "))


def test_enum_and_bool_values(cat: Catalogue) -> None:
    cands = script(cat, "api CreateCluster hypervisorType=S")
    assert texts(cands) == ["hypervisorType=Simulator"] and cands[0].shown == "Simulator"
    assert texts(script(cat, "cluster create --hypervisor-type ")) == ["Simulator", "KVM"]
    assert texts(script(cat, "api DeleteZone cascade=")) == ["cascade=true", "cascade=false"]


def test_reference_values_insert_names_shown_with_short_uuids(cat: Catalogue) -> None:
    cands = shell(cat, "CreateCluster name=x zoneUuid=")
    assert texts(cands) == ["zoneUuid=z1", "zoneUuid=zeta"]  # the node resolves names
    assert cands[0].shown == f"z1 ({Z1[:8]})" and cands[0].label == f"Zone {Z1[:8]}"
    # typed text matches a name prefix (the name goes in) or a UUID prefix (the UUID does)
    assert texts(shell(cat, "CreateCluster zoneUuid=zet")) == ["zoneUuid=zeta"]
    assert texts(shell(cat, "CreateCluster zoneUuid=a1")) == [f"zoneUuid={Z1}"]
    assert texts(script(cat, "cluster create --zone-uuid z")) == ["z1", "zeta"]


def test_ambiguous_or_missing_names_insert_uuids(cat: Catalogue) -> None:
    twins = {"Zone": [(Z1, "same"), (Z2, "same"), ("c" * 32, "")]}
    engine = Engine(cat, lambda t: twins.get(t, []), interactive=True)
    cands = engine.complete(["CreateCluster", "zoneUuid="])
    assert texts(cands) == [f"zoneUuid={Z1}", f"zoneUuid={Z2}", f"zoneUuid={'c' * 32}"]
    assert cands[0].shown == f"{Z1} (same)" and cands[2].shown == "c" * 32


def test_list_reference_completes_the_last_item(cat: Catalogue) -> None:
    assert texts(script(cat, f"api AttachThing zoneUuids={Z1},ze")) == [f"zoneUuids={Z1},zeta"]


def test_positional_slot_offers_live_resources(cat: Catalogue) -> None:
    assert {"z1", "zeta"} <= set(texts(script(cat, "zone delete ")))
    assert texts(script(cat, "zone get z1")) == ["z1"]
    assert script(cat, f"zone get {Z1} ") == []  # filled
    # a create's slot is a new name: nothing to offer
    assert texts(script(cat, "zone create ")) == ["name=", "description="]
    # the one reference to the API's own resource is the slot (cluster attach CLUSTER)
    assert "c1" in texts(script(cat, "cluster attach "))


def test_login_account_names(cat: Catalogue) -> None:
    assert texts(script(cat, "login --")) == ["--account", "--password"]
    assert texts(script(cat, "login --account a")) == ["admin"]


def test_a_failing_names_source_gives_no_names(cat: Catalogue) -> None:
    def broken(_type: str) -> list[tuple[str, str]]:
        raise OSError("node gone")

    engine = Engine(cat, broken)
    assert engine.complete(["api", "CreateCluster", "zoneUuid="]) == []
    assert Engine(cat).complete(["zone", "get", ""]) == []


# --------------------------------------------------------------------------- query fields


def test_fields_through_joins(cat: Catalogue) -> None:
    assert texts(shell(cat, "QueryHost cluster.zone.na")) == ["cluster.zone.name"]
    assert texts(shell(cat, "host list cluster.zone.na")) == ["cluster.zone.name"]
    joined = texts(shell(cat, "QueryZone cluster."))
    assert "cluster.zoneUuid" in joined and "cluster.host." in joined and "cluster.zone." in joined


def test_choosing_a_join_inserts_the_trailing_dot(cat: Catalogue) -> None:
    inter = shell(cat, "QueryZone cluster.ho")
    assert texts(inter) == ["cluster.host."] and inter[0].nospace
    assert texts(script(cat, "api QueryZone cluster.ho")) == ["cluster.host."]


def test_vm_nics_offers_the_nic_fields_and_joins(cat: Catalogue) -> None:
    nics = texts(shell(cat, "QueryVmInstance vmNics."))
    assert nics[:3] == ["vmNics.uuid", "vmNics.ip", "vmNics.l3NetworkUuid"]
    assert {"vmNics.l3Network.", "vmNics.vmInstance."} <= set(nics)
    assert texts(shell(cat, "QueryVmInstance vmNics.l3Net")) == [
        "vmNics.l3NetworkUuid", "vmNics.l3Network.",
    ]  # fmt: skip
    deep = texts(shell(cat, "QueryVmInstance vmNics.l3Network.na"))
    assert deep == ["vmNics.l3Network.name"]


def test_unknown_join_gives_nothing(cat: Catalogue) -> None:
    assert shell(cat, "QueryHost nosuch.na") == []
    assert shell(cat, "QueryHost cpuNum.x") == []  # a field is not a join


def test_operators_once_a_field_is_whole(cat: Catalogue) -> None:
    cands = shell(cat, "QueryHost cpuNum")
    assert texts(cands)[:4] == ["cpuNum", "cpuNum=", "cpuNum!=", "cpuNum>"]
    assert "cpuNum=null" in texts(cands) and "cpuNum?=" in texts(cands)
    ops = {c.shown: c.meta for c in cands}
    assert ops["~="].startswith("like")


def test_query_options_and_tag_fields(cat: Catalogue) -> None:
    top = texts(shell(cat, "QueryHost "))
    assert {"limit=", "sortBy=", "count=", "__userTag__", "__systemTag__"} <= set(top)
    assert "conditions=" not in top
    assert texts(shell(cat, "QueryHost sortBy=c")) == ["sortBy=clusterUuid", "sortBy=cpuNum"]
    assert texts(shell(cat, "QueryHost fields=uuid,na")) == ["fields=uuid,name"]
    assert texts(shell(cat, "QueryHost sortDirection=d")) == ["sortDirection=desc"]
    assert texts(shell(cat, "host list --sort")) == ["--sort-by", "--sort-direction"]


def test_condition_values(cat: Catalogue) -> None:
    assert texts(shell(cat, "QueryZone state=E")) == ["state=Enabled"]
    assert texts(shell(cat, "QueryHost cluster.zone.state!=")) == [
        "cluster.zone.state!=Enabled", "cluster.zone.state!=Disabled",
    ]  # fmt: skip
    assert texts(shell(cat, "QueryHost clusterUuid=")) == [f"clusterUuid={C1}"]
    assert texts(shell(cat, "QueryZone uuid=b")) == [f"uuid={Z2}"]
    # name conditions insert the name, not the UUID
    assert texts(shell(cat, "QueryHost cluster.zone.name=z")) == [
        "cluster.zone.name=z1", "cluster.zone.name=zeta",
    ]  # fmt: skip
    assert texts(shell(cat, f"QueryHost cluster.zoneUuid?={Z1},")) == [
        f"cluster.zoneUuid?={Z1},{Z1}", f"cluster.zoneUuid?={Z1},{Z2}",
    ]  # fmt: skip
    assert shell(cat, "QueryHost managementIp=") == []  # free text


def test_zone_get_positional_in_query_mode(cat: Catalogue) -> None:
    assert texts(script(cat, "zone get ")) == ["z1", "zeta"]
    assert "name=" not in texts(script(cat, "zone get "))
