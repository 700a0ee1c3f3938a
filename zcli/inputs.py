"""Input for people: flag aliases, verbs shared by several APIs, ZStack's special keys.

* :func:`alias` -- ``--image`` for ``imageUuid``, ``--offering`` for
  ``instanceOfferingUuid``, ``--cidr`` for ``networkCidr``, ``--vm`` for a VM NIC parameter;
* :func:`pick_api` -- ``ip-range add --cidr C`` is AddIpRangeByNetworkCidr, ``ip-range add
  --start-ip ...`` AddIpRange: the API whose parameters fit what was given;
* :func:`condition_objects` -- ZStack's ``conditions=`` (a condition, or a JSON list of
  strings and ``{"name", "op", "value"}`` objects);
* :func:`zstack_timeout` -- ZStack's ``timeout=`` key (milliseconds; ``30s``, ``5m`` too).
"""

from __future__ import annotations

from zcli.catalogue import Api, LazyPattern, kebab, positional_slot
from zmn.api.errors import InvalidArgument

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_CAPS = LazyPattern(r"[A-Z]")


class UsageError(InvalidArgument):
    """The command line does not fit the grammar (exit status 2); says what is valid."""

    default_code = "CLI.USAGE"


_NULL_OPS = ("=null", "!=null")


def alias(api: Api, key: str) -> str | None:
    """The parameter of ``api`` that ``key`` names when it is not a parameter itself:
    ``keyUuid``/``keyUuids``; ``vm`` for the VM or its NIC; else the parameter ending with
    ``Key``/``KeyUuid``/``KeyUuids``, required ones first, then the one with the shortest
    qualifier (``l3NetworkUuids`` before ``defaultL3NetworkUuid``). None: no such name."""
    params = api.params
    for name in (f"{key}Uuid", f"{key}Uuids"):
        if name in params:
            return name
    if key == "vm":
        if "vmInstanceUuid" in params:
            return "vmInstanceUuid"
        nics = [p.name for p in params.values() if p.raw.get("resource") == "VmNic"]
        return nics[0] if len(nics) == 1 else None
    cap = key[:1].upper() + key[1:]
    if not key or not key[:1].islower():
        return None
    found = [p for p in params.values() if p.name.endswith((cap, f"{cap}Uuid", f"{cap}Uuids"))]
    if not found:
        return None

    def rank(p: Any) -> tuple[bool, int, int, str]:
        qualifier = p.name[: p.name.rfind(cap)]
        return (not p.required, len(_CAPS.findall(qualifier)), len(p.name), p.name)

    return str(min(found, key=rank).name)


def pick_api(
    apis: list[Api],
    tokens: list[str],
    parse_args: Callable[[Api, list[str]], tuple[dict[str, Any], list[str]]],
    command: str,
) -> tuple[Api, dict[str, Any], list[str]]:
    """The one API of a shared verb that takes every argument given and gets all its
    required ones; when several do, the one with the fewest parameters (the plain form:
    ``l2 create`` without ``--vlan`` is CreateL2NoVlanNetwork)."""
    fits: list[tuple[Api, dict[str, Any], list[str]]] = []
    errors: list[InvalidArgument] = []
    for api in apis:
        try:
            args, positional = parse_args(api, tokens)
        except InvalidArgument as exc:
            errors.append(exc)
            continue
        fits.append((api, args, positional))
    if not fits:
        raise errors[0]
    complete = [f for f in fits if _has_required(*f)]
    best = complete or fits
    best.sort(key=lambda f: len(f[0].params))
    if len(best) > 1 and len(best[0][0].params) == len(best[1][0].params):
        names = [kebab(f[0].name) for f in best]
        raise UsageError(
            f"{command}: the arguments fit {' and '.join(names)}; say which"
            f" ({command.split()[0]} {names[0]} ...)",
            code="CLI.AMBIGUOUS_VERB",
            field="verb",
            choices=names,
        )
    return best[0]


def _has_required(api: Api, args: dict[str, Any], positional: list[str]) -> bool:
    slot = positional_slot(api) if positional else None
    return all(p.name in args or p.name == slot or not p.required for p in api.params.values())


def condition_objects(value: str) -> list[Any]:
    """ZStack's ``conditions=``: empty (none), a JSON list or object, or one condition."""
    value = value.strip()
    if not value:
        return []
    if value[:1] not in "[{":
        return [value]
    import json

    try:
        data = json.loads(value)
    except ValueError as exc:
        raise UsageError(
            f"conditions: not JSON ({exc})", code="QUERY.BAD_CONDITION", field="conditions"
        ) from None
    items = data if isinstance(data, list) else [data]
    for item in items:
        if isinstance(item, dict):
            check_condition_object(item)
    return items


def check_condition_object(item: dict[str, Any]) -> None:
    """A ``{"name", "op", "value"}`` condition: every part there (never the text None)."""
    for part in ("name", "op"):
        if not isinstance(item.get(part), str) or not item[part]:
            raise UsageError(
                f"condition {item!r} has no {part}",
                code="QUERY.BAD_CONDITION",
                field=f"conditions.{part}",
            )
    if item["op"] not in _NULL_OPS and item.get("value") is None:
        raise UsageError(
            f"condition on {item['name']!r} ({item['op']}) has no value; give one, or use"
            " op =null or !=null",
            code="QUERY.BAD_CONDITION",
            field="conditions.value",
        )


_DURATION = LazyPattern(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def zstack_timeout(value: str) -> float:
    """``timeout=``: milliseconds as ZStack counts them, or a number with ``ms s m h``."""
    match = _DURATION.match(value)
    seconds = float(match.group(1)) * _SECONDS[match.group(2) or "ms"] if match else 0.0
    if seconds <= 0:
        raise UsageError(
            f"timeout: expected milliseconds (or 30s, 5m), got {value!r}",
            code="ARG.INVALID",
            field="timeout",
        )
    return seconds


def split_line(text: str) -> list[str]:
    """A batch or shell line split like a shell does, where ``#`` starts a comment only at
    the start of a word (``name=z#1`` is a value, as in zstack-cli); ValueError on an
    unclosed quote."""
    if text.isascii() and _PLAIN.fullmatch(text):
        # no quote, escape or comment, and only the whitespace shlex splits on: the same
        # words (most batch lines; shlex is pure Python and was a third of a batch line's CPU)
        return text.split()
    import shlex

    return shlex.split(text[: _comment_start(text)])


_PLAIN = LazyPattern(r"[^'\"\\#\x0b\x0c\x1c-\x1f]*")


def _comment_start(text: str) -> int:
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                i += 1
        elif ch == "\\":
            i += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return i
        i += 1
    return len(text)
