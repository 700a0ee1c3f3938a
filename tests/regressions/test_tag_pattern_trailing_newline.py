"""Regression: TagPattern matched with ``^...$`` and ``re.match``, and ``$`` also matches
before a final newline, so ``hostname::web1\\n`` validated as a system tag (and was stored
with the newline). Patterns now have to match the whole tag.
"""

from __future__ import annotations

import pytest

from zmn.api.errors import InvalidArgument
from zmn.core.tags import TagPattern, TagPatterns


def test_trailing_newline_is_not_a_valid_tag() -> None:
    patterns = TagPatterns()
    patterns.add(TagPattern("hostname::{hostname}", "VmInstance"))
    assert patterns.validate("VmInstance", "hostname::web1")[1] == {"hostname": "web1"}
    with pytest.raises(InvalidArgument) as info:
        patterns.validate("VmInstance", "hostname::web1\n")
    assert info.value.code == "TAG.NO_PATTERN"
