"""API message decoding: shell strings and JSON in, InvalidArgument naming the field out."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from zmn.api.errors import InvalidArgument, NotFound
from zmn.api.message import (
    ApiTable,
    CreateMessage,
    DeleteMessage,
    Doc,
    Ref,
    Secret,
    api,
    decode_args,
    message_to_args,
    params_of,
)


@api(resource="Thing", verb="create")
class CreateThing(CreateMessage, kw_only=True):
    """Create a thing.

    Longer text that is not the summary.
    """

    name: Annotated[str, Doc("thing name")]
    zoneUuid: Annotated[str, Doc("zone of the thing"), Ref("Zone")]
    cpuNum: Annotated[int, Doc("number of CPUs")] = 1
    enabled: Annotated[bool, Doc("start enabled")] = True
    mode: Annotated[Literal["fast", "slow"], Doc("speed")] = "fast"
    nums: Annotated[list[int], Doc("numbers")] = []
    names: Annotated[list[str], Doc("names")] = []
    opts: Annotated[dict[str, str], Doc("options")] = {}
    limit: Annotated[int | None, Doc("optional limit")] = None
    password: Annotated[str | None, Doc("secret"), Secret()] = None


@api(resource="Thing", verb="delete", admin=True)
class DeleteThing(DeleteMessage, kw_only=True):
    """Delete a thing."""


BASE = {"name": "t1", "zoneUuid": "z1"}


def _err(args: dict[str, object]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        decode_args(CreateThing, args)
    return info.value


def test_unknown_parameter_suggests_the_close_name() -> None:
    err = _err({**BASE, "cpuNun": "2"})
    assert err.code == "ARG.UNKNOWN"
    assert err.field == "cpuNun"
    assert "did you mean cpuNum?" in err.message
    assert "cpuNum" in err.details["choices"]


def test_unknown_parameter_without_close_match_lists_parameters() -> None:
    err = _err({**BASE, "zzzzzz": "1"})
    assert err.code == "ARG.UNKNOWN"
    assert "did you mean" not in err.message
    assert "parameters: name, zoneUuid" in err.message


def test_missing_required_names_the_field_and_its_doc() -> None:
    err = _err({"name": "t1"})
    assert err.code == "ARG.MISSING"
    assert err.field == "zoneUuid"
    assert "zone of the thing" in err.message


def test_enum_error_names_field_and_choices() -> None:
    err = _err({**BASE, "mode": "medium"})
    assert err.code == "ARG.INVALID"
    assert err.field == "mode"
    assert "must be one of fast, slow" in err.message
    assert err.details["expected"] == {"type": "enum", "enum": ["fast", "slow"]}


def test_wrong_type_names_the_field() -> None:
    err = _err({**BASE, "cpuNum": "two"})
    assert err.field == "cpuNum"
    assert err.details["expected"] == {"type": "int"}
    err = _err({**BASE, "nums": "1,x"})
    assert err.field == "nums"
    err = _err({**BASE, "enabled": "maybe"})
    assert err.field == "enabled"


def test_shell_strings_become_typed_values() -> None:
    msg = decode_args(
        CreateThing,
        {
            **BASE,
            "cpuNum": "4",
            "enabled": "false",
            "nums": "1, 2,3,",
            "names": "a,b , c",
            "systemTags": "hostname::h1",
        },
    )
    assert isinstance(msg, CreateThing)
    assert msg.cpuNum == 4
    assert msg.enabled is False
    assert msg.nums == [1, 2, 3]
    assert msg.names == ["a", "b", "c"]
    assert msg.systemTags == ["hostname::h1"]


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("false", False), ("1", True), ("0", False)]
)
def test_bool_strings(text: str, value: bool) -> None:
    msg = decode_args(CreateThing, {**BASE, "enabled": text})
    assert isinstance(msg, CreateThing)
    assert msg.enabled is value


def test_typed_json_is_accepted_unchanged() -> None:
    msg = decode_args(CreateThing, {**BASE, "cpuNum": 8, "nums": [5], "opts": {"k": "v"}})
    assert isinstance(msg, CreateThing)
    assert (msg.cpuNum, msg.nums, msg.opts) == (8, [5], {"k": "v"})


def test_empty_string_for_nullable_is_none_and_empty_list() -> None:
    msg = decode_args(CreateThing, {**BASE, "limit": "", "names": ""})
    assert isinstance(msg, CreateThing)
    assert msg.limit is None
    assert msg.names == []


def test_map_parsing() -> None:
    msg = decode_args(CreateThing, {**BASE, "opts": "a:1, b : two,c:x:y"})
    assert isinstance(msg, CreateThing)
    assert msg.opts == {"a": "1", "b": "two", "c": "x:y"}
    err = _err({**BASE, "opts": "a:1,broken"})
    assert err.field == "opts"
    assert "'broken'" in err.message


def test_defaults_and_message_to_args() -> None:
    msg = decode_args(CreateThing, dict(BASE))
    args = message_to_args(msg)
    assert args["cpuNum"] == 1
    assert args["mode"] == "fast"
    assert args["name"] == "t1"
    assert decode_args(CreateThing, args) == msg


def test_params_of_metadata() -> None:
    params = {p.name: p for p in params_of(CreateThing)}
    names = [p.name for p in params_of(CreateThing)]
    # own parameters first, inherited CreateMessage ones last
    assert names[:2] == ["name", "zoneUuid"]
    assert names[-4:] == ["resourceUuid", "description", "systemTags", "userTags"]
    assert params["zoneUuid"].ref == "Zone"
    assert params["zoneUuid"].required
    assert params["password"].secret
    assert params["cpuNum"].to_dict() == {
        "name": "cpuNum",
        "required": False,
        "type": "int",
        "default": 1,
        "doc": "number of CPUs",
        "min": 1,
        "max": 1024,
    }
    assert params["limit"].type == {"type": "int", "nullable": True}
    assert params["nums"].type == {"type": "list", "items": {"type": "int"}}
    assert params["opts"].type == {"type": "map"}
    assert params["mode"].type == {"type": "enum", "enum": ["fast", "slow"]}


def test_api_spec() -> None:
    spec = CreateThing.__api__
    assert spec.name == "CreateThing"
    assert spec.summary == "Create a thing."
    assert (spec.resource, spec.verb, spec.admin) == ("Thing", "create", False)
    assert DeleteThing.__api__.admin
    assert [p.name for p in params_of(DeleteThing)] == ["uuid", "cascade"]


def test_api_table_unknown_api_suggests() -> None:
    table = ApiTable()
    table.add(CreateThing)
    table.add(DeleteThing)
    assert table.get("CreateThing") is CreateThing
    with pytest.raises(NotFound) as info:
        table.get("CreateThin")
    assert info.value.code == "API.NOT_FOUND"
    assert "did you mean CreateThing" in info.value.message
