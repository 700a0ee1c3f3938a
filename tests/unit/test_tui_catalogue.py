"""The dashboard's reading of the catalogue: views, aliases, actions, drill-downs, capacity."""

from __future__ import annotations

import copy

import pytest

from tui.catalogue import Catalogue
from tui.testing import sample_catalogue


@pytest.fixture
def cat() -> Catalogue:
    return Catalogue(sample_catalogue())


def test_views_follow_preferred_order_and_need_a_query_api(cat: Catalogue) -> None:
    assert [v.name for v in cat.views()] == ["Zone", "Cluster", "Host", "VmInstance"]
    raw = sample_catalogue()
    raw["apis"] = [a for a in raw["apis"] if a["name"] != "QueryHost"]
    assert "Host" not in [v.name for v in Catalogue(raw).views()]


def test_columns_come_from_the_catalogue(cat: Catalogue) -> None:
    assert cat.resources["Host"].columns == ["uuid", "name", "clusterUuid", "state", "status"]


def test_aliases_cli_names_plurals_and_resolution(cat: Catalogue) -> None:
    assert cat.resolve(":zone") == "Zone"
    assert cat.resolve("hosts") == "Host"
    assert cat.resolve("VmInstance") == "VmInstance"
    assert cat.resolve("vm") == "VmInstance"
    assert cat.resolve("nothing") is None
    assert cat.suggestions("ho")[0] == ("host", "Host")


def test_short_aliases_and_ties() -> None:
    raw = sample_catalogue()
    for name, cli in (("L3Network", "l3-network"), ("IpRange", "ip-range"), ("VmNic", "vm-nic")):
        raw["resources"].append(
            {"name": name, "cli": cli, "columns": ["uuid"], "fields": [], "joins": []}
        )
        raw["apis"].append(
            {"name": f"Query{name}", "resource": name, "verb": "query", "mutating": False}
        )
    raw["resources"][3]["cli"] = "vm-instance"
    raw["resources"][-1]["fields"] = [{"name": "vmInstanceUuid", "resource": "VmInstance"}]
    cat = Catalogue(raw)
    assert cat.resolve("l3") == "L3Network"
    assert cat.resolve("ip") == "IpRange"
    # "vm" could be vm-instance or vm-nic: the type more resources point at wins.
    assert cat.resolve("vm") == "VmInstance"
    assert cat.resolve("vi") == "VmInstance"


def test_actions_are_derived_generically(cat: Catalogue) -> None:
    host = [(a.label, a.describe(), a.long) for a in cat.actions("Host")]
    assert host == [
        ("disable", "ChangeHostState stateEvent=disable", False),
        ("enable", "ChangeHostState stateEvent=enable", False),
        ("maintain", "ChangeHostState stateEvent=maintain", False),
        ("reconnect", "ReconnectHost", True),
    ]
    # Update needs input a confirmation cannot give; queries are not actions.
    assert [a.label for a in cat.actions("Zone")] == ["disable", "enable"]


def test_vm_actions_appear_from_the_catalogue_alone(cat: Catalogue) -> None:
    vm = cat.actions("VmInstance")
    assert [a.label for a in vm] == ["start", "stop", "destroy"]
    assert vm[-1].dangerous and not vm[0].dangerous


def test_api_with_other_required_params_is_not_an_action() -> None:
    raw = copy.deepcopy(sample_catalogue())
    raw["apis"].append(
        {
            "name": "MigrateVm",
            "resource": "VmInstance",
            "verb": "migrate",
            "mutating": True,
            "params": [
                {"name": "uuid", "required": True, "type": "string"},
                {"name": "hostUuid", "required": True, "type": "string"},
            ],
        }
    )
    assert "migrate" not in [a.label for a in Catalogue(raw).actions("VmInstance")]
    raw["apis"][-1]["params"][1]["required"] = False
    labels = [a.label for a in Catalogue(raw).actions("VmInstance")]
    # one entry a verb: the form (which also takes the defaults), not a plain twin beside it
    assert labels.count("migrate…") == 1 and "migrate" not in labels


def test_console_keeps_its_plain_entry_beside_the_take_over() -> None:
    raw = copy.deepcopy(sample_catalogue())
    raw["apis"].append(
        {
            "name": "OpenVmConsole",
            "resource": "VmInstance",
            "verb": "console",
            "mutating": True,
            "params": [
                {"name": "uuid", "required": True, "type": "string"},
                {"name": "force", "required": False, "type": "bool"},
            ],
        }
    )
    labels = [a.label for a in Catalogue(raw).actions("VmInstance")]
    # "console…" is not a form but the take-over (force): attaching plainly is still offered
    assert labels.count("console") == 1 and labels.count("console…") == 1


def test_actions_are_offered_by_the_state_machine(cat: Catalogue) -> None:
    zone = {a.label: a for a in cat.actions("Zone")}
    assert not cat.permits("Zone", zone["enable"], {"state": "Enabled"})  # a no-op event
    assert cat.permits("Zone", zone["disable"], {"state": "Enabled"})
    assert cat.permits("Zone", zone["enable"], {"state": "Disabled"})
    vm = {a.label: a for a in cat.actions("VmInstance")}
    running = {"state": "Running"}
    assert [n for n, a in vm.items() if cat.permits("VmInstance", a, running)] == [
        "stop",
        "destroy",
    ]
    assert cat.permits("VmInstance", vm["start"], {"state": "Stopped"})
    # an operation named after the API rather than the verb
    raw = copy.deepcopy(cat.raw)
    raw["apis"].append(
        {
            "name": "ChangeInstanceOffering",
            "resource": "VmInstance",
            "verb": "change-offering",
            "mutating": True,
            "params": [{"name": "uuid", "required": True, "type": "string"}],
        }
    )
    raw["stateMachines"]["VmInstance"]["allowed"]["changeInstanceOffering"] = ["Stopped"]
    wider = Catalogue(raw)
    change = next(a for a in wider.actions("VmInstance") if a.api == "ChangeInstanceOffering")
    assert not wider.permits("VmInstance", change, running)
    assert wider.permits("VmInstance", change, {"state": "Stopped"})
    # what the catalogue does not describe stays offered
    host = {a.label: a for a in cat.actions("Host")}
    assert cat.permits("Host", host["maintain"], {"state": "Enabled"})
    assert cat.permits("VmInstance", vm["start"], {"name": "no state field"})


def test_drills_children_then_parents(cat: Catalogue) -> None:
    zone = cat.drills("Zone")
    assert [(d.target, d.condition, d.parent) for d in zone] == [
        ("Cluster", "zoneUuid={value}", False),
        ("Host", "zoneUuid={value}", False),
    ]
    host = cat.drills("Host")
    assert [(d.target, d.parent) for d in host] == [
        ("VmInstance", False),
        ("Zone", True),
        ("Cluster", True),
    ]
    row = {"uuid": "h1", "zoneUuid": "z1", "clusterUuid": None}
    assert host[0].conditions_for(row) == ["hostUuid=h1"]
    assert host[1].conditions_for(row) == ["uuid=z1"]
    assert host[2].conditions_for(row) is None


def test_drill_through_a_link_table_uses_the_join() -> None:
    raw = sample_catalogue()
    raw["resources"].append(
        {
            "name": "PrimaryStorage",
            "cli": "primary-storage",
            "columns": ["uuid"],
            "fields": [],
            "joins": [{"name": "cluster", "resource": "Cluster"}],
        }
    )
    raw["apis"].append(
        {"name": "QueryPrimaryStorage", "resource": "PrimaryStorage", "verb": "query"}
    )
    raw["resources"][1]["joins"].append({"name": "primaryStorage", "resource": "PrimaryStorage"})
    drills = Catalogue(raw).drills("Cluster")
    assert ("PrimaryStorage", "cluster.uuid={value}") in [(d.target, d.condition) for d in drills]


def test_capacity_metrics_from_field_pairs(cat: Catalogue) -> None:
    metrics = {m.label: m for m in cat.metrics()}
    assert set(metrics) == {"cpu", "memory"}
    assert metrics["cpu"].unit == "count" and metrics["memory"].unit == "bytes"
    assert metrics["cpu"].group_field("Zone") == "zoneUuid"
    assert metrics["cpu"].group_field("Cluster") == "clusterUuid"


def test_completion_of_fields_joins_and_enums(cat: Catalogue) -> None:
    assert "state" in cat.complete("Host", "st")
    assert "status" in cat.complete("Host", "st")
    assert cat.complete("Host", "clu") == ["clusterUuid", "cluster."]
    assert cat.complete("Host", "cluster.zo") == ["cluster.zoneUuid", "cluster.zone."]
    assert cat.enum_of("Host", "cluster.zone.state") == ["Enabled", "Disabled"]
