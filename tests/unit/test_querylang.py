"""The condition language ``field<op>value`` shared by the server and the clients."""

from __future__ import annotations

import pytest

from zmn.api.errors import InvalidArgument
from zmn.api.querylang import (
    ALL_OPERATORS,
    OPERATOR_DOCS,
    Condition,
    parse_condition,
    split_field,
)


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ("name=z1", "name", "=", "z1"),
        ("name!=z1", "name", "!=", "z1"),
        ("cpuNum>2", "cpuNum", ">", "2"),
        ("cpuNum<2", "cpuNum", "<", "2"),
        ("cpuNum>=2", "cpuNum", ">=", "2"),
        ("cpuNum<=2", "cpuNum", "<=", "2"),
        ("state?=Running,Stopped", "state", "?=", "Running,Stopped"),
        ("state!?=Running,Stopped", "state", "!?=", "Running,Stopped"),
        ("name~=web%", "name", "~=", "web%"),
        ("name!~=web_", "name", "!~=", "web_"),
        ("description=null", "description", "=null", None),
        ("description!=null", "description", "!=null", None),
    ],
)
def test_every_operator(text: str, name: str, op: str, value: str | None) -> None:
    cond = parse_condition(text)
    assert (cond.name, cond.op, cond.value) == (name, op, value)
    assert str(cond) == text


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("description=a=b", "=", "a=b"),
        ("description==x", "=", "=x"),
        ("description!=a!=b", "!=", "a!=b"),
        ("description>=<=", ">=", "<="),
        ("description=a?=b", "=", "a?=b"),
        ("description~=%=%", "~=", "%=%"),
        ("description=", "=", ""),
        ("description=nullish", "=", "nullish"),
        ("description=NULL", "=", "NULL"),  # only lower-case null is the null test
        ("description=x' OR '1'='1", "=", "x' OR '1'='1"),
        ("description=line1\nline2", "=", "line1\nline2"),
        ("description= padded", "=", " padded"),
    ],
)
def test_values_keep_operator_characters(text: str, op: str, value: str) -> None:
    cond = parse_condition(text)
    assert cond.name == "description"
    assert (cond.op, cond.value) == (op, value)


def test_dotted_and_tag_fields() -> None:
    cond = parse_condition("vmNics.l3Network.zone.name=z1")
    assert cond.path == ["vmNics", "l3Network", "zone", "name"]
    assert parse_condition("__userTag__~=web").path == ["__userTag__"]
    assert parse_condition("  name=z1  ").value == "z1"


def test_in_list_values_are_trimmed_and_empties_dropped() -> None:
    assert parse_condition("state?= a , b,,c ,").values() == ["a", "b", "c"]
    assert parse_condition("state?=").values() == []


@pytest.mark.parametrize(
    "text", ["", "name", "=z1", "1name=z", "na me=z", "name.=z", "name..x=z", "name:z"]
)
def test_bad_conditions_are_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_condition(text)
    assert info.value.code == "QUERY.BAD_CONDITION"
    assert info.value.field == "conditions"
    assert set(info.value.details["choices"]) == set(ALL_OPERATORS)


def test_operator_tables_agree() -> None:
    assert set(ALL_OPERATORS) == set(OPERATOR_DOCS)
    assert len(ALL_OPERATORS) == 12


def test_split_field_for_completion() -> None:
    assert split_field("vmNics.l3") == ("vmNics.l3", None, "")
    assert split_field("name!?=a,") == ("name", "!?=", "a,")
    assert split_field("cpuNum>=") == ("cpuNum", ">=", "")


def test_condition_str_roundtrip() -> None:
    for text in ("a=1", "a.b!~=x%", "a=null", "a!=null", "a?=1,2"):
        assert str(parse_condition(text)) == text
    assert Condition("a", "=null", None).values() == []
