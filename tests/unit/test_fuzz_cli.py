"""Fuzzing the zcli grammar: any token list is a command or a UsageError, nothing else.

The catalogue is the real one (every installed service, no node started). Tokens mix the
words the grammar knows (resources, verbs, API names, parameters as ``--kebab``,
``key=value`` and conditions with every operator) with arbitrary text, so most examples get
deep into the parser rather than stopping at "unknown resource".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zcli.catalogue import Catalogue, kebab
from zcli.options import parse_globals
from zcli.parser import ApiCall, Help, Login, Logout, UsageError, parse
from zmn.api.querylang import ALL_OPERATORS
from zmn.core.catalogue import build_catalogue
from zmn.core.config import BootConfig
from zmn.core.node import Node


def real_catalogue() -> Catalogue:
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(BootConfig.load(Path(tmp), env={}))
        try:
            node.load_services()
            return Catalogue(build_catalogue(node))
        finally:
            node.db.dispose()


CAT = real_catalogue()
RESOURCES = sorted({*CAT.resource_words(), *(r.name for r in CAT.resources.values())})
VERBS = sorted({v for r in CAT.resources.values() for v in CAT.verbs(r)})
PARAMS = sorted({p for a in CAT.apis.values() for p in a.params})
FIELDS = sorted(
    {f["name"] for r in CAT.resources.values() for f in r.fields}
    | {f"{j['name']}.name" for r in CAT.resources.values() for j in r.joins}
)
SPECIAL = ["help", "--help", "-h", "api", "login", "logout", "--", "-", "=", "--=", "--x=",
           "true", "false", "null", "", " ", "--account", "--password", "a=b=c", "0" * 32]  # fmt: skip

values = st.text(max_size=12) | st.sampled_from(["1", "-1", "1e99", "a,b", "k:v", "", "null"])
condition = st.builds(
    lambda f, op, v: f"{f}{op}{v}" if op not in ("=null", "!=null") else f"{f}{op}",
    st.sampled_from(FIELDS) | st.text(max_size=10) | st.text(alphabet="ab._1", max_size=6),
    st.sampled_from(ALL_OPERATORS),
    values,
)
token = st.one_of(
    st.sampled_from(RESOURCES),
    st.sampled_from(VERBS),
    st.sampled_from(sorted(CAT.apis)),
    st.sampled_from(PARAMS).map(lambda p: f"--{kebab(p)}"),
    st.builds(lambda p, v: f"{p}={v}", st.sampled_from(PARAMS), values),
    st.builds(lambda p, v: f"--{kebab(p)}={v}", st.sampled_from(PARAMS), values),
    condition,
    st.sampled_from(SPECIAL),
    st.text(max_size=16),
)
# Most command lines start like a real one: a resource then a verb, or api then an API.
command = st.one_of(
    st.lists(token, max_size=8),
    st.tuples(
        st.sampled_from(RESOURCES),
        st.sampled_from(["list", "get", *VERBS]),
        st.lists(token, max_size=6),
    ).map(lambda t: [t[0], t[1], *t[2]]),
    st.tuples(st.sampled_from(sorted(CAT.apis)), st.lists(token, max_size=6)).map(
        lambda t: ["api", t[0], *t[1]]
    ),
)
BUDGET = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(BUDGET, max_examples=1800)
@given(command)
def test_parse_gives_a_command_or_a_usage_error(tokens: list[str]) -> None:
    try:
        cmd = parse(tokens, CAT)
    except UsageError as exc:
        assert exc.code.startswith(("CLI.", "ARG.", "QUERY.")) and exc.exit_status == 2
        return
    assert isinstance(cmd, ApiCall | Help | Login | Logout)
    if isinstance(cmd, ApiCall):
        assert cmd.api in CAT.apis and isinstance(cmd.args, dict)


options = st.sampled_from(
    ["-o", "--output", "-c", "--columns", "-q", "--quiet", "--no-header", "--no-wait",
     "--timeout", "--endpoint", "--session", "-f", "--file", "--continue-on-error",
     "--version", "-oyaml", "--output=json", "--timeout=0", "--timeout=nan", "--bogus"]
)  # fmt: skip


@settings(BUDGET, max_examples=400)
@given(st.lists(options | token, max_size=8), st.booleans())
def test_global_options_then_command(argv: list[str], in_batch: bool) -> None:
    try:
        _opts, rest = parse_globals(argv, in_batch=in_batch)
        parse(rest, CAT)
    except UsageError as exc:
        assert exc.exit_status == 2
