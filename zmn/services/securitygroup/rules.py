"""Rule validation: pure functions (no database), so they are tested directly.

A rule comes either from single-rule parameters (``type=Ingress protocol=TCP startPort=22
...``) or as one map of a ``rules`` list; errors name the field as the caller wrote it
(``startPort``, or ``rules[1].startPort``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from zmn.api.errors import InvalidArgument

TYPES = ("Ingress", "Egress")
PROTOCOLS = ("TCP", "UDP", "ICMP", "ALL")
PORTED = ("TCP", "UDP")
RULE_KEYS = (
    "type",
    "protocol",
    "startPort",
    "endPort",
    "allowedCidr",
    "remoteSecurityGroupUuid",
    "description",
)


@dataclass(frozen=True)
class RuleSpec:
    """A well-formed rule; ``remoteSecurityGroupUuid`` is still a UUID or a name here."""

    type: str
    protocol: str
    startPort: int | None
    endPort: int | None
    allowedCidr: str | None
    remoteSecurityGroupUuid: str | None
    description: str | None = None

    def key(self) -> tuple[Any, ...]:
        """What makes two rules of one group the same rule."""
        return (
            self.type,
            self.protocol,
            self.startPort,
            self.endPort,
            self.allowedCidr,
            self.remoteSecurityGroupUuid,
        )


def _bad(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", code="SECURITY_GROUP.INVALID_RULE", field=field)


def _choice(raw: Any, choices: tuple[str, ...], field: str) -> str:
    if raw is None or raw == "":
        raise _bad(field, f"required; one of {', '.join(choices)}")
    for choice in choices:
        if str(raw).upper() == choice.upper():
            return choice
    raise _bad(field, f"{raw!r} is not one of {', '.join(choices)}")


def _port(raw: Any, field: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _bad(field, f"{raw!r} is not a port number") from None
    if isinstance(raw, float) and raw != value:
        raise _bad(field, f"{raw!r} is not a port number")
    if not 0 <= value <= 65535 and value != -1:
        raise _bad(field, f"{value} is outside 0-65535")
    return value


def _cidr(raw: Any, field: str) -> str:
    text = str(raw).strip()
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        try:
            near = ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            raise _bad(field, f"{raw!r} is not an IPv4 CIDR like 10.0.0.0/24") from None
        raise _bad(field, f"{raw!r} has host bits set; did you mean {near}?") from None
    return str(net)


def check_rule(raw: dict[str, Any], prefix: str = "") -> RuleSpec:
    """A rule that is well formed, or the error naming the bad field (``prefix`` + name)."""
    for key in raw:
        if key not in RULE_KEYS:
            raise InvalidArgument(
                f"{prefix}{key}: a rule has no field {key!r} (fields: {', '.join(RULE_KEYS)})",
                code="SECURITY_GROUP.INVALID_RULE",
                field=f"{prefix}{key}",
            )
    kind = _choice(raw.get("type"), TYPES, f"{prefix}type")
    protocol = _choice(raw.get("protocol"), PROTOCOLS, f"{prefix}protocol")
    start = _port(raw.get("startPort"), f"{prefix}startPort")
    end = _port(raw.get("endPort"), f"{prefix}endPort")
    if protocol in PORTED:
        if start is None:
            raise _bad(f"{prefix}startPort", f"a {protocol} rule needs startPort (0-65535)")
        if end is None:
            end = start
        for field, value in (("startPort", start), ("endPort", end)):
            if value == -1:
                raise _bad(f"{prefix}{field}", f"{value} is outside 0-65535")
        if start > end:
            raise _bad(f"{prefix}endPort", f"{end} is below startPort {start}")
    else:
        for field, port in (("startPort", start), ("endPort", end)):
            if port not in (None, -1):
                raise _bad(
                    f"{prefix}{field}",
                    f"{protocol} rules have no ports; leave startPort and endPort out",
                )
        start = end = None
    cidr_raw = raw.get("allowedCidr")
    remote = raw.get("remoteSecurityGroupUuid") or None
    cidr = _cidr(cidr_raw, f"{prefix}allowedCidr") if cidr_raw not in (None, "") else None
    if cidr and remote:
        raise _bad(
            f"{prefix}allowedCidr",
            "give allowedCidr or remoteSecurityGroupUuid, not both",
        )
    if cidr is None and remote is None:
        cidr = "0.0.0.0/0"
    description = raw.get("description")
    return RuleSpec(
        kind,
        protocol,
        start,
        end,
        cidr,
        str(remote) if remote else None,
        str(description) if description is not None else None,
    )
