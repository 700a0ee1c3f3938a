"""Fuzzing the API argument decoder: any arguments for any API give a message or
InvalidArgument naming the problem, nothing else, and an accepted message can be redacted
and encoded for the job table and the audit trail.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zmn.api.errors import InvalidArgument
from zmn.api.message import REDACTED, ApiMessage, decode_args, params_of, redacted_args
from zmn.core.config import BootConfig
from zmn.core.node import Node


def every_api() -> dict[str, type[ApiMessage]]:
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(BootConfig.load(Path(tmp), env={}))
        try:
            node.load_services()
            return dict(node.apis.apis)
        finally:
            node.db.dispose()


APIS = every_api()
NAMES = sorted(APIS)

# What a shell or a careless script sends: numbers as text, comma lists, k:v maps, empties.
shellish = st.sampled_from(
    ["", "1", "-1", "0", "1.5", "1e400", "nan", "true", "False", "null", "a,b", ",", "k:v",
     "k:v,x", "k", "0" * 32, "é", "Ingress", "TCP", "asc", "x" * 300, "\x00", "9" * 40,
     "\x1b[2J", "a\u202eb", "x" * 70_000, "-inf"]
)  # fmt: skip
# Big integers: wider than any database column, on both sides.
big = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**40, -(10**40)])
scalars = (
    st.none() | st.booleans() | st.integers() | big | st.floats() | st.text(max_size=20) | shellish
)
values = (
    scalars
    | st.lists(scalars, max_size=3)
    | st.dictionaries(shellish, scalars | st.lists(scalars, max_size=2), max_size=3)
)


@st.composite
def api_call(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(NAMES))
    params = params_of(APIS[name])
    names = [p.name for p in params] or ["x"]
    args = {}
    for _ in range(draw(st.integers(0, 5))):
        key = draw(st.sampled_from(names)) if draw(st.integers(0, 4)) else draw(st.text(max_size=8))
        args[key] = draw(values)
    if draw(st.booleans()):  # often: every required parameter present
        for p in params:
            if p.required and p.name not in args:
                args[p.name] = draw(values)
    return name, args


@settings(max_examples=2300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(api_call())
def test_decode_args_gives_a_message_or_invalid_argument(call: tuple[str, dict[str, Any]]) -> None:
    name, args = call
    cls = APIS[name]
    try:
        msg = decode_args(cls, args)
    except InvalidArgument as exc:
        assert exc.code.startswith(("ARG.", "INVALID_ARGUMENT")) or exc.field, exc
        assert exc.field is None or isinstance(exc.field, str)
        return
    assert isinstance(msg, cls)
    redacted = redacted_args(msg)
    msgspec.json.encode(redacted)  # the job table and the audit trail store it as JSON
    for p in params_of(cls):
        if p.secret and redacted.get(p.name) is not None:
            assert redacted[p.name] == REDACTED


def test_deeply_nested_arguments_are_refused_or_kept_not_crashed() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    for name in ("AddSecurityGroupRule", "CreateZone", "QueryZone"):
        try:
            msg = decode_args(APIS[name], {"rules": deep, "name": deep, "conditions": deep})
        except InvalidArgument:
            continue
        msgspec.json.encode(redacted_args(msg))
