"""zmn.api.cjson reads and writes what json.loads and compact json.dumps do."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from zmn.api import cjson

VALUES: list[Any] = [
    {},
    [],
    {"a": [1, -2, 2.5, 1e300, 10**30, None, True, False, "x"]},
    {"name": "z\u00e9\u4e2d\U0001f600", "ctl": '\x00\x1b[31m\n\t"\\/', "bidi": "\u202e"},
    {"nested": {"deep": [[{"k": ""}]]}, "float": 0.1, "neg": -0.0},
    "just a string",
    42,
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_and_loads_are_compact_json(value: Any) -> None:
    text = cjson.dumps(value)
    assert text == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert cjson.loads(text) == json.loads(text) == value
    spaced = " \n" + json.dumps(value, indent=2) + "\r\n\t"
    assert cjson.loads(spaced) == json.loads(spaced)


@pytest.mark.parametrize(
    "text", ["", "   ", "{", '{"a":1} x', "[1,]", '{"a" 1}', "nul", "\ufeff{}"]
)
def test_bad_json_is_a_value_error_as_with_json(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        cjson.loads(text)


def test_constants_and_what_cannot_be_encoded() -> None:
    assert math.isnan(cjson.loads("NaN")) and cjson.loads("[-Infinity]") == [float("-inf")]

    def refuse(name: str) -> Any:
        raise ValueError(name)

    with pytest.raises(ValueError, match="Infinity"):
        cjson.loads('{"a": Infinity}', parse_constant=refuse)
    with pytest.raises(ValueError):
        cjson.dumps({"a": float("nan")}, allow_nan=False)
    assert cjson.dumps([float("inf")]) == "[Infinity]"
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        cjson.dumps({"a": {1}})
    assert cjson.dumps({"a": {1}}, default=sorted) == '{"a":[1]}'
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        cjson.dumps(loop)


def test_it_does_not_import_the_json_package() -> None:
    code = (
        "import sys\n"
        "from zmn.api import cjson\n"
        "cjson.loads(cjson.dumps({'a': [1, 'b']}))\n"
        "print(sorted(m for m in sys.modules if m == 'json' or m.startswith('json.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
