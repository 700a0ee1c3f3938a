"""Strict validation of everything that reaches libvirt XML, argv lists or config files.

The agent never formats user data into a string that another program parses; still, names,
addresses and paths are checked here against narrow grammars so that a bad value is refused
with a clear ``InvalidArgument`` naming its field instead of surfacing as an odd libvirt or
dnsmasq error later. Every function returns the normalised value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from zmn.api.errors import InvalidArgument

_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_UUID_RE = re.compile(r"[0-9a-f]{32}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def bad(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", field=field)


def obj(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise bad(field, "must be a JSON object")
    return value


def string(value: Any, field: str, *, max_len: int = 255, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise bad(field, "must be a string")
    if not value and not allow_empty:
        raise bad(field, "must not be empty")
    if len(value) > max_len:
        raise bad(field, f"longer than {max_len} characters")
    return value


def text_line(value: Any, field: str, *, max_len: int = 255) -> str:
    """Free text on one line: anything printable (quotes, <, & included, escaped later)."""
    s = string(value, field, max_len=max_len)
    if _CONTROL_RE.search(s):
        raise bad(field, "must not contain control characters or newlines")
    return s


def text_block(value: Any, field: str, *, max_len: int = 4096) -> str:
    s = string(value, field, max_len=max_len, allow_empty=True)
    if _CONTROL_RE.search(s.replace("\n", "").replace("\t", "")):
        raise bad(field, "must not contain control characters other than newline and tab")
    return s


def integer(value: Any, field: str, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field, "must be an integer")
    if not lo <= value <= hi:
        raise bad(field, f"must be between {lo} and {hi}")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise bad(field, "must be true or false")
    return value


def choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise bad(field, f"must be one of {', '.join(allowed)}")
    return str(value)


def uuid(value: Any, field: str) -> str:
    """A resource UUID: 32 hex digits (dashes accepted and removed, case folded)."""
    s = string(value, field, max_len=36).replace("-", "").lower()
    if not _UUID_RE.fullmatch(s):
        raise bad(field, "must be a UUID (32 hex digits)")
    return s


def dashed(uuid32: str) -> str:
    u = uuid32
    return f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"


def token(value: Any, field: str) -> str:
    s = string(value, field, max_len=64)
    if not _TOKEN_RE.fullmatch(s):
        raise bad(field, "must be 1-64 characters of A-Z a-z 0-9 _ -")
    return s


def mac(value: Any, field: str) -> str:
    s = string(value, field, max_len=17).lower()
    if not _MAC_RE.fullmatch(s):
        raise bad(field, "must be a MAC address like 52:54:00:12:34:56")
    if int(s[:2], 16) & 1:
        raise bad(field, "must be a unicast MAC address")
    return s


def ifname(value: Any, field: str) -> str:
    """A Linux interface name: at most 15 characters of A-Z a-z 0-9 _ . -"""
    s = string(value, field, max_len=15)
    if not _IFNAME_RE.fullmatch(s) or s in {".", ".."}:
        raise bad(field, "must be an interface name (1-15 of A-Z a-z 0-9 _ . -)")
    return s


def ipv4(value: Any, field: str) -> ipaddress.IPv4Address:
    s = string(value, field, max_len=15)
    try:
        return ipaddress.IPv4Address(s)
    except ValueError:
        raise bad(field, "must be an IPv4 address") from None


def ip_any(value: Any, field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    s = string(value, field, max_len=45)
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        raise bad(field, "must be an IP address") from None


def cidr(value: Any, field: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    s = string(value, field, max_len=49)
    try:
        return ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise bad(field, "must be a CIDR like 10.0.0.0/24") from None


def hostname(value: Any, field: str) -> str:
    """An RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    s = string(value, field, max_len=253).lower()
    if not all(_LABEL_RE.fullmatch(label) for label in s.split(".")):
        raise bad(field, "must be a host name (letters, digits, inner hyphens, dots)")
    return s


def abspath(value: Any, field: str) -> str:
    """An absolute file path without control characters, '..' components or a trailing '/'."""
    s = string(value, field, max_len=4096)
    if not s.startswith("/") or _CONTROL_RE.search(s):
        raise bad(field, "must be an absolute path without control characters")
    if ".." in s.split("/") or s.endswith("/"):
        raise bad(field, "must not contain '..' or end with '/'")
    return s


def items(value: Any, field: str, *, max_items: int = 4096) -> list[Any]:
    if not isinstance(value, list):
        raise bad(field, "must be a JSON array")
    if len(value) > max_items:
        raise bad(field, f"more than {max_items} items")
    return value
