"""System-tag patterns: ``hostname::{hostname}``, ``staticIp::{l3NetworkUuid}::{ip}``.

A service declares the patterns its resources accept; a system tag must match one declared
for its resource type. User tags are free text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zmn.api.errors import InvalidArgument

_TOKEN = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass
class TagPattern:
    pattern: str
    resource: str
    doc: str = ""
    validator: Callable[[dict[str, str]], str | None] | None = None
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        parts = _TOKEN.split(self.pattern)
        out = ""
        for i, part in enumerate(parts):
            out += f"(?P<{part}>.+?)" if i % 2 else re.escape(part)
        self.regex = re.compile("^" + out + "$")

    @property
    def tokens(self) -> list[str]:
        return _TOKEN.findall(self.pattern)

    def match(self, tag: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(tag)  # `$` alone would accept a trailing newline
        return m.groupdict() if m else None

    def make(self, **tokens: Any) -> str:
        return self.pattern.format(**tokens)


class TagPatterns:
    def __init__(self) -> None:
        self.patterns: list[TagPattern] = []

    def add(self, p: TagPattern) -> None:
        self.patterns.append(p)

    def for_resource(self, resource: str) -> list[TagPattern]:
        return [p for p in self.patterns if p.resource == resource]

    def validate(self, resource: str, tag: str) -> tuple[TagPattern, dict[str, str]]:
        """The pattern a system tag matches, or an error listing the accepted ones."""
        candidates = self.for_resource(resource)
        for p in candidates:
            tokens = p.match(tag)
            if tokens is not None:
                if p.validator is not None:
                    problem = p.validator(tokens)
                    if problem:
                        raise InvalidArgument(
                            f"system tag {tag!r}: {problem}", code="TAG.INVALID", field="tag"
                        )
                return p, tokens
        accepted = ", ".join(p.pattern for p in candidates) or "none"
        raise InvalidArgument(
            f"system tag {tag!r} matches no pattern of {resource} (accepted: {accepted})",
            code="TAG.NO_PATTERN",
            field="tag",
            choices=[p.pattern for p in candidates],
        )
