"""Limits on what a client may send: integer ranges and text lengths, declared once.

Every parameter gets a limit from its type and name (:data:`INT_RANGES`,
:data:`TEXT_LENGTHS`), and a field overrides it with ``Annotated`` metadata::

    vlan: Annotated[int, Doc("VLAN ID"), Range(1, 4094, code="L2_NETWORK.INVALID_VLAN")]
    sshPrivateKey: Annotated[str | None, Doc("..."), Text(16384, allow="\\n")]

:func:`check_value` runs after decoding, over lists and maps too (a map's keys name the
limit of their values, so ``rules=[{"startPort": ...}]`` gets the port range). Out-of-range
numbers and over-long or control-character text are :class:`InvalidArgument` naming the field
and the limit: ``ARG.INVALID`` unless the field declares its own code. A number beyond what any
backend stores (a signed 64-bit integer) is ``ARG.INVALID`` whatever the field says.

Text is inert: C0 and C1 control characters, DEL, Unicode line separators and bidirectional
overrides are refused, except the characters a field lists in ``allow``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from zmn.api.errors import InvalidArgument
from zmn.api.text import UNSAFE

UNSAFE_RE = re.compile(UNSAFE)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
BYTES_MAX = 2**60  # 1 EiB: any size in bytes; sums of a few stay inside a BIGINT
NAME_MAX = 255  # ZStack's name column
MAX_DEPTH = 16  # lists and maps inside a parameter


@dataclass(frozen=True)
class Range:
    """The inclusive range of an integer (or float) parameter."""

    min: float
    max: float
    code: str = "ARG.INVALID"


@dataclass(frozen=True)
class Text:
    """The longest text a string parameter takes, and the control characters it allows."""

    max_length: int
    allow: str = ""


# Integer and float parameters by name; a field's own Range() wins.
INT_RANGES: dict[str, Range] = {
    "cpuNum": Range(1, 1024),
    "cpuSpeed": Range(0, 1_000_000),
    "memorySize": Range(1, 2**50),
    "cpuCapacity": Range(1, 2**20, "HOST.INVALID_CAPACITY"),
    "memoryCapacity": Range(1, BYTES_MAX, "HOST.INVALID_CAPACITY"),
    "totalCapacity": Range(0, BYTES_MAX, "STORAGE.INVALID_CAPACITY"),
    "availableCapacity": Range(0, BYTES_MAX, "STORAGE.INVALID_CAPACITY"),
    "diskSize": Range(0, BYTES_MAX),
    "size": Range(0, BYTES_MAX),
    "primaryStorageSize": Range(0, BYTES_MAX),
    "sshPort": Range(1, 65535),
    "vlan": Range(1, 4094, "L2_NETWORK.INVALID_VLAN"),
    "limit": Range(0, 100_000),
    "start": Range(0, INT64_MAX),
    "count": Range(0, 1_000_000),
    "sortKey": Range(-(2**31), 2**31 - 1),
    "deviceId": Range(0, 1024),
    "timeout": Range(0, 86_400 * 7),
    "latency": Range(0, 3600),
}
DEFAULT_RANGE = Range(INT64_MIN, INT64_MAX)

# String parameters (and the strings in list parameters) by name; everything else NAME_MAX.
TEXT_LENGTHS: dict[str, Text] = {
    "description": Text(2048),
    "url": Text(2048),
    "systemTags": Text(65536),
    "userTags": Text(65536),
    "tag": Text(65536),
    "conditions": Text(4096),
    "sshPrivateKey": Text(4096),
    "after": Text(4096),
    "message": Text(1024),
    "value": Text(4096),
    # cloud-init user data: 64 KiB once decoded (zmn.api.cloudinit), so base64 may take 4/3
    # of that; YAML and scripts need their line breaks and tabs
    "userData": Text(88 * 1024, allow="\n\r\t"),
    "sshKeys": Text(16384),
}
DEFAULT_TEXT = Text(NAME_MAX)


def int_range(name: str, declared: Range | None = None) -> Range:
    return declared or INT_RANGES.get(name, DEFAULT_RANGE)


def text_limit(name: str, declared: Text | None = None) -> Text:
    return declared or TEXT_LENGTHS.get(name, DEFAULT_TEXT)


def _fmt(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


def describe(rng: Range) -> str:
    """``0-65535``, or ``between -5 and 5`` when the bounds are negative."""
    low, high = _fmt(rng.min), _fmt(rng.max)
    return f"{low}-{high}" if rng.min >= 0 else f"between {low} and {high}"


def check_number(api_name: str, where: str, value: float, rng: Range) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(
            f"{api_name}: invalid {where}: must be a finite number, {describe(rng)}",
            code="ARG.INVALID",
            field=where,
            min=rng.min,
            max=rng.max,
        )
    if rng.min <= value <= rng.max:
        return
    shown = str(value) if len(str(value)) <= 24 else f"a {len(str(value))}-digit number"
    code = rng.code if INT64_MIN <= value <= INT64_MAX else "ARG.INVALID"
    raise InvalidArgument(
        f"{api_name}: invalid {where}: must be {describe(rng)}, got {shown}",
        code=code,
        field=where,
        min=rng.min,
        max=rng.max,
    )


def check_text(api_name: str, where: str, value: str, limit: Text) -> None:
    if len(value) > limit.max_length:
        raise InvalidArgument(
            f"{api_name}: invalid {where}: at most {limit.max_length} characters, got {len(value)}",
            code="ARG.INVALID",
            field=where,
            maxLength=limit.max_length,
        )
    for match in UNSAFE_RE.finditer(value):
        if match.group() not in limit.allow:
            raise InvalidArgument(
                f"{api_name}: invalid {where}: control character U+{ord(match.group()):04X}"
                f" at position {match.start()}; remove it (text must be printable)",
                code="ARG.INVALID",
                field=where,
                position=match.start(),
            )


def check_value(
    api_name: str,
    field: str,
    value: Any,
    rng: Range | None = None,
    text: Text | None = None,
    *,
    where: str | None = None,
    depth: int = 0,
) -> None:
    """Check one decoded parameter value, recursing into lists and maps.

    A list's items get the parameter's limits. Inside a map (``rules=[{...}]``) text gets the
    limit its key names, numbers only the 64-bit bound: the service checks its own keys.
    """
    where = where or field
    if isinstance(value, bool) or value is None:
        return
    if depth > MAX_DEPTH:
        raise InvalidArgument(
            f"{api_name}: invalid {field}: nested deeper than {MAX_DEPTH} levels",
            code="ARG.INVALID",
            field=field,
        )
    if isinstance(value, int | float):
        check_number(api_name, where, value, rng or DEFAULT_RANGE)
    elif isinstance(value, str):
        check_text(api_name, where, value, text or text_limit(field))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_value(api_name, field, item, rng, text, where=f"{where}[{i}]", depth=depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_value(api_name, field, k, DEFAULT_RANGE, text, where=where, depth=depth + 1)
            key = str(k)
            inner = f"{where}.{key}"
            check_value(api_name, key, v, DEFAULT_RANGE, None, where=inner, depth=depth + 1)
