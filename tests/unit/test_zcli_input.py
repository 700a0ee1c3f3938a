"""Input for people (issue 15, items 1, 3 and 7) over the real catalogue, without a node:
options anywhere, flag aliases, shared verbs, several targets, ZStack's grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_fuzz_cli import CAT
from zcli.inputs import split_line
from zcli.options import parse_globals
from zcli.parser import ApiCall, UsageError, parse
from zmn.api.errors import InvalidArgument
from zmn.api.message import byte_sized, decode_args, parse_size
from zmn.api.querylang import parse_condition, split_list
from zmn.core.query import parse_conditions


def line(text: str) -> tuple[object, ApiCall]:
    opts, rest = parse_globals(split_line(text))
    cmd = parse(rest, CAT)
    assert isinstance(cmd, ApiCall)
    return opts, cmd


# ----------------------------------------------------------------- item 1: options anywhere


@pytest.mark.parametrize(
    "text",
    [
        "-o json -c name,state vm list name=web1 --no-header",
        "vm list -o json name=web1 -c name,state --no-header",
        "vm list name=web1 --no-header -c name,state -o json",
        "vm --output=json list -cname,state name=web1 --no-header",
    ],
)
def test_global_options_before_or_after_the_command(text: str) -> None:
    opts, cmd = line(text)
    assert (opts.output, opts.columns, opts.no_header) == ("json", ["name", "state"], True)  # type: ignore[attr-defined]
    assert cmd.api == "QueryVmInstance" and cmd.args == {"conditions": ["name=web1"]}


def test_double_dash_ends_options_and_values_may_start_with_a_dash() -> None:
    opts, cmd = line("zone create -- -q")
    assert not opts.quiet and cmd.args == {"name": "-q"}  # type: ignore[attr-defined]
    _, cmd = line("zone update z1 --description=-o")
    assert cmd.args == {"uuid": "z1", "description": "-o"}
    opts, rest = parse_globals(["-o", "json", "--", "zone", "list", "-q"])
    assert opts.output == "json" and not opts.quiet and rest == ["zone", "list", "-q"]
    _, cmd = line("vm list --sort-by -createDate")  # -field: descending
    assert cmd.args == {"sortBy": "createDate", "sortDirection": "desc"}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("zone list -x", "-x"),
        ("-x zone list", "-x"),
        ("--bogus zone list", "--bogus"),
        ("zone list --state Enabled", "--state"),  # a misplaced condition: never a query field
        ("vm stop web1 --bogus", "bogus"),
    ],
)
def test_unknown_or_misplaced_option_is_a_usage_error_naming_it(text: str, named: str) -> None:
    with pytest.raises(UsageError) as exc:
        line(text)
    assert exc.value.exit_status == 2
    assert named in exc.value.message and named.lstrip("-") in (exc.value.field or "")


def test_batch_line_takes_options_anywhere_but_not_connection_ones() -> None:
    opts, rest = parse_globals(["zone", "list", "-o", "yaml"], in_batch=True)
    assert opts.output == "yaml" and rest == ["zone", "list"]
    with pytest.raises(UsageError):
        parse_globals(["zone", "list", "--endpoint", "unix:/x"], in_batch=True)


# ----------------------------------------------------------------- item 3: input for people


def test_flag_aliases_name_the_parameter_they_end() -> None:
    _, cmd = line("vm create web1 --image img --offering small --network l3 --host h1 --zone z1")
    assert cmd.args == {
        "name": "web1",
        "imageUuid": "img",
        "instanceOfferingUuid": "small",
        "l3NetworkUuids": "l3",
        "hostUuid": "h1",
        "zoneUuid": "z1",
    }
    _, cmd = line("volume create data1 --offering d10")
    assert cmd.args == {"name": "data1", "diskOfferingUuid": "d10"}
    _, cmd = line("l3 create l3b --network l2")
    assert cmd.args == {"name": "l3b", "l2NetworkUuid": "l2"}


def test_shared_verbs_are_told_apart_by_their_arguments() -> None:
    _, cmd = line("ip-range add --cidr 10.1.0.0/24 --l3-network l3")
    assert cmd.api == "AddIpRangeByNetworkCidr" and cmd.args["networkCidr"] == "10.1.0.0/24"
    _, cmd = line(
        "ip-range add r2 --l3-network l3 --start-ip 10.0.0.2 --end-ip 10.0.0.9"
        " --netmask 255.255.255.0 --gateway 10.0.0.1"
    )
    assert cmd.api == "AddIpRange"
    _, cmd = line("l2 create l2a --zone z1 --physical-interface eth0")
    assert cmd.api == "CreateL2NoVlanNetwork"
    _, cmd = line("l2 create l2b --zone z1 --physical-interface eth0 --vlan 100")
    assert cmd.api == "CreateL2VlanNetwork" and cmd.args["vlan"] == "100"
    _, cmd = line("l2 create-l2-vlan-network l2c --zone z1 --physical-interface e --vlan 1")
    assert cmd.api == "CreateL2VlanNetwork"  # the full names stay
    with pytest.raises(UsageError) as exc:
        line("l2 create l2d --zone z1 --bogus 1")
    assert exc.value.field == "bogus"


def test_several_targets_one_call_each() -> None:
    _, cmd = line("vm stop a b c")
    assert cmd.api == "StopVmInstance"
    assert [a["uuid"] for a in cmd.each()] == ["a", "b", "c"]
    with pytest.raises(UsageError):
        line("zone create z1 z2")


def test_vm_name_for_a_nic() -> None:
    _, cmd = line("eip attach e1 --vm web1")
    assert cmd.args == {"eipUuid": "e1", "vmNicUuid": "web1"}
    _, cmd = line("sg add-nic sg1 --vm web1")
    assert cmd.args == {"securityGroupUuid": "sg1", "vmNicUuids": "web1"}


def test_did_you_mean_for_verbs() -> None:
    with pytest.raises(UsageError) as exc:
        line("vm stpo web1")
    assert "did you mean stop?" in exc.value.message


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2G", 2 * 1024**3),
        ("20GiB", 20 * 1024**3),
        ("512m", 512 * 1024**2),
        ("33554432", 32 * 1024**2),
    ],
)
def test_sizes_take_suffixes(text: str, size: int) -> None:
    assert parse_size(text, "memorySize") == size
    from zmn.services.offering.api import CreateInstanceOffering

    msg = decode_args(CreateInstanceOffering, {"name": "o", "cpuNum": "1", "memorySize": text})
    assert msg.memorySize == size  # type: ignore[attr-defined]


def test_bad_size_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_size("2X", "memorySize")
    assert exc.value.field == "memorySize" and "2G" in exc.value.message
    assert byte_sized("totalCapacity") and not byte_sized("cpuCapacity")
    assert not byte_sized("cpuNum") and byte_sized("size")


def test_enum_values_any_case() -> None:
    from zmn.services.zone.api import ChangeZoneState

    msg = decode_args(ChangeZoneState, {"uuid": "u" * 32, "stateEvent": "DISABLE"})
    assert msg.stateEvent == "disable"  # type: ignore[attr-defined]


# ----------------------------------------------------------------- item 7: ZStack's grammar


def test_hash_starts_a_comment_only_at_the_start_of_a_word() -> None:
    assert split_line("zone create name=z#1 # the first") == ["zone", "create", "name=z#1"]
    assert split_line("# all comment") == []
    assert split_line("zone list 'name=#x' \"a #b\"") == ["zone", "list", "name=#x", "a #b"]
    assert split_line(r"zone create z\#2") == ["zone", "create", "z#2"]


def test_escaped_comma_in_list_values() -> None:
    assert split_list(r"a\,b,c") == ["a,b", "c"]
    assert split_list("a, b,,c") == ["a", "b", "c"]
    assert parse_condition(r"name?=x\,y,z").values() == ["x,y", "z"]


def test_conditions_and_timeout_keys() -> None:
    _, cmd = line("vm list conditions=name=web1 timeout=30000")
    assert cmd.args == {"conditions": ["name=web1"]} and cmd.timeout == 30.0
    _, cmd = line('vm list \'conditions=[{"name":"name","op":"=","value":"web1"},"cpuNum>1"]\'')
    assert cmd.args["conditions"] == [{"name": "name", "op": "=", "value": "web1"}, "cpuNum>1"]
    _, cmd = line("vm stop web1 timeout=5s")
    assert cmd.timeout == 5.0 and cmd.args == {"uuid": "web1"}
    _, cmd = line("api QueryZone conditions=")
    assert cmd.args == {}


def test_a_condition_object_without_a_value_is_an_error() -> None:
    with pytest.raises(UsageError) as exc:
        line('vm list \'conditions=[{"name":"name","op":"="}]\'')
    assert "no value" in exc.value.message and exc.value.field == "conditions.value"
    with pytest.raises(InvalidArgument) as node_side:  # the node refuses it too
        parse_conditions([{"name": "name", "op": "="}])
    assert "None" not in node_side.value.message
    assert parse_conditions([{"name": "name", "op": "=null"}])[0].op == "=null"


def test_an_operator_we_do_not_have_is_an_error() -> None:
    for text in ("vm list name<>web1", "api QueryVmInstance cpuNum<>2"):
        with pytest.raises(InvalidArgument) as exc:
            line(text)
        assert exc.value.code == "QUERY.BAD_OPERATOR" and "'!='" in exc.value.message
    with pytest.raises(InvalidArgument):
        parse_condition("name<>x")  # the node's parser too


def test_query_conditions_on_sizes_take_suffixes() -> None:
    from zmn.core.query import convert_value
    from zmn.core.resource import FieldInfo

    assert convert_value(FieldInfo("memorySize", "int"), "2G", "memorySize") == 2 * 1024**3
    assert convert_value(FieldInfo("memorySize", "int"), "1024", "memorySize") == 1024
    with pytest.raises(InvalidArgument):
        convert_value(FieldInfo("cpuNum", "int"), "2G", "cpuNum")  # not a size


@given(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
        # words and every kind of whitespace: where str.split and shlex could differ
        st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x1fab=-\u00a0\u2003", max_size=40),
    )
)
def test_split_line_splits_as_shlex_does(text: str) -> None:
    """The plain-line shortcut (no quote, escape, comment, or whitespace shlex keeps in a
    word) gives shlex's words; any other line goes through shlex itself."""
    import shlex

    try:
        expected = shlex.split(text) if "#" not in text else None
    except ValueError:
        with pytest.raises(ValueError):
            split_line(text)
        return
    if expected is not None:
        assert split_line(text) == expected
