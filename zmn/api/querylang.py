"""The query condition language: ``field<op>value``, shared by the server and every client.

Operators (ZStack's)::

    =  !=  >  <  >=  <=   comparison
    ?=  !?=               in / not in a comma-separated list
    ~=  !~=               like / not like (% and _ wildcards; no wildcard = substring)
    =null  !=null         is null / is not null

A field is a dotted path: zero or more expansions, then a field of the last resource
(``vmNics.l3Network.zone.name``), or a tag pseudo-field (``__userTag__``, ``__systemTag__``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zmn.api.errors import InvalidArgument

# Longest operators first so that ``!?=`` is not read as ``!`` + ``?=``.
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
QUERY_OPTIONS = (
    "count",
    "replyWithCount",
    "limit",
    "start",
    "after",
    "sortBy",
    "sortDirection",
    "fields",
    "groupBy",
)
TAG_FIELDS = ("__userTag__", "__systemTag__")

# An operator of other languages that the regular expression would read as one of ours
# followed by a value (``a<>1`` as ``a < ">1"``): refused, naming the one to use. (``a==1``
# stays the value ``=1``: a value may hold operator characters.)
NOT_OPERATORS = {"<>": "!="}

_COND_RE = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(!\?=|!~=|\?=|~=|!=|>=|<=|=|>|<)(.*)$",
    re.S,
)


@dataclass(frozen=True)
class Condition:
    """One parsed condition; ``op`` is one of :data:`ALL_OPERATORS`."""

    name: str
    op: str
    value: str | None

    @property
    def path(self) -> list[str]:
        return self.name.split(".")

    def values(self) -> list[str]:
        """The items of an in / not-in list; ``\\,`` is a comma inside an item."""
        return split_list(self.value or "")

    def __str__(self) -> str:
        if self.op in NULL_OPERATORS:
            return f"{self.name}{self.op}"
        return f"{self.name}{self.op}{self.value}"


def split_list(text: str) -> list[str]:
    """``a, b\\,c`` -> ``["a", "b,c"]``: items split at commas not escaped by a backslash
    (zstack-cli's ``\\,``), stripped, empty ones dropped."""
    if "\\" not in text:
        return [v.strip() for v in text.split(",") if v.strip()]
    items, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1 : i + 2] == ",":
            current.append(",")
            i += 2
            continue
        if ch == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current))
    return [v.strip() for v in items if v.strip()]


def parse_condition(text: str) -> Condition:
    """Parse ``field<op>value``; ``field=null`` and ``field!=null`` test for null."""
    match = _COND_RE.match(text.strip())
    if not match:
        raise InvalidArgument(
            f"bad query condition {text!r}: expected FIELD OP VALUE with OP one of "
            + " ".join(ALL_OPERATORS),
            code="QUERY.BAD_CONDITION",
            field="conditions",
            choices=list(ALL_OPERATORS),
        )
    name, op, value = match.groups()
    check_operator(name, op, value)
    if op in ("=", "!=") and value == "null":
        return Condition(name, op + "null", None)
    return Condition(name, op, value)


def check_operator(name: str, op: str, value: str) -> None:
    """Refuse ``a<>1``: an operator we do not have, never read as ``a < ">1"``."""
    typed = op + value[:1]
    if typed in NOT_OPERATORS:
        raise InvalidArgument(
            f"bad query condition {name}{op}{value!s}: there is no operator {typed!r}"
            f"; use {NOT_OPERATORS[typed]!r} (operators: {' '.join(ALL_OPERATORS)})",
            code="QUERY.BAD_OPERATOR",
            field=name,
            choices=list(ALL_OPERATORS),
        )


def split_field(token: str) -> tuple[str, str | None, str]:
    """For completion: split a partial token into (field, operator or None, value)."""
    match = _COND_RE.match(token)
    if not match:
        return token, None, ""
    name, op, value = match.groups()
    return name, op, value
