"""The fixed words of the command line, for completion callbacks and the parser.

``zcli __complete`` runs once per Tab, so it must not import the API contract: the query
language module pulls in :mod:`dataclasses` (and through it :mod:`inspect`) and the errors
module :mod:`typing`, together a good part of a completion's budget. The few query-language
words completion needs are repeated here; tests/unit/test_complete_catalogue.py checks that
they equal those of :mod:`zmn.api.querylang`. This module imports only :mod:`re`.
"""

from __future__ import annotations

import re

from zcli.catalogue import LazyPattern

OUTPUTS = ("table", "json", "yaml", "csv", "value", "wide")
# global option -> (Options attribute, takes a value)
GLOBAL_OPTIONS: dict[str, tuple[str, bool]] = {
    "-o": ("output", True),
    "--output": ("output", True),
    "-c": ("columns", True),
    "--columns": ("columns", True),
    "-q": ("quiet", False),
    "--quiet": ("quiet", False),
    "--no-header": ("no_header", False),
    "--no-wait": ("no_wait", False),
    "--timeout": ("timeout", True),
    "--endpoint": ("endpoint", True),
    "--session": ("session", True),
    "-f": ("file", True),
    "--file": ("file", True),
    "--continue-on-error": ("continue_on_error", False),
    "--parallel": ("parallel", True),
    "--version": ("version", False),
    "-y": ("yes", False),
    "--yes": ("yes", False),
}

# --- the query language (zmn.api.querylang), repeated -------------------------------------
OPERATORS = ("!?=", "!~=", "?=", "~=", "!=", ">=", "<=", "=", ">", "<")
NULL_OPERATORS = ("=null", "!=null")
ALL_OPERATORS = (*OPERATORS[:2], "=null", "!=null", *OPERATORS[2:])
OPERATOR_DOCS = {
    "=": "equal",
    "!=": "not equal",
    ">": "greater than",
    "<": "less than",
    ">=": "greater than or equal",
    "<=": "less than or equal",
    "?=": "in a comma-separated list",
    "!?=": "not in a comma-separated list",
    "~=": "like (% and _ wildcards; without them, contains)",
    "!~=": "not like",
    "=null": "is null",
    "!=null": "is not null",
}
TAG_FIELDS = ("__userTag__", "__systemTag__")
NOT_OPERATORS = ("<>",)
COND_RE = LazyPattern(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(!\?=|!~=|\?=|~=|!=|>=|<=|=|>|<)(.*)$",
    re.S,
)


def split_field(token: str) -> tuple[str, str | None, str]:
    """For completion: split a partial token into (field, operator or None, value); the same
    as :func:`zmn.api.querylang.split_field`."""
    match = COND_RE.match(token)
    if not match:
        return token, None, ""
    name, op, value = match.groups()
    return name, op, value


def condition(text: str) -> tuple[str, str, str | None]:
    """``field<op>value`` as (field, op, value), with ``=null``/``!=null`` as operators and
    no value: what :func:`zmn.api.querylang.parse_condition` returns, without importing it
    unless the text is no condition (then its error is raised)."""
    match = COND_RE.match(text.strip())
    if not match:
        from zmn.api.querylang import parse_condition

        parse_condition(text)  # raises the contract's error for a bad condition
        raise AssertionError(text)  # pragma: no cover - parse_condition has raised
    name, op, value = match.groups()
    if op + value[:1] in NOT_OPERATORS:  # a<>1 is not a < ">1"
        from zmn.api.querylang import check_operator

        check_operator(name, op, value)
    if op in ("=", "!=") and value == "null":
        return name, op + "null", None
    return name, op, value


def condition_text(name: str, op: str, value: str | None) -> str:
    """The condition as the node reads it (``str`` of a querylang ``Condition``)."""
    return f"{name}{op}" if op in NULL_OPERATORS else f"{name}{op}{value}"
