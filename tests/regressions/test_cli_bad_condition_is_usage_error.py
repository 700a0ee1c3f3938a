"""Regression: a token that looks like a query condition but is none (``a.=1``, ``A.<``)
escaped ``zcli.parser.parse`` as InvalidArgument instead of UsageError.

The zcli grammar promises a command or a UsageError; the shell and the batch runner rely on
it. Found by tests/unit/test_fuzz_cli.py (``api QueryAccount A.<``).
"""

from __future__ import annotations

import pytest

from zcli.catalogue import Catalogue
from zcli.parser import UsageError, parse

CATALOGUE = Catalogue(
    {
        "apis": [
            {
                "name": "QueryZone",
                "resource": "Zone",
                "verb": "query",
                "params": [{"name": "conditions", "type": "list", "required": False}],
            }
        ],
        "resources": [{"name": "Zone", "cli": "zone", "fields": [{"name": "name"}]}],
    }
)


@pytest.mark.parametrize(
    "tokens",
    [["api", "QueryZone", "A.<"], ["zone", "list", "a.=1"], ["zone", "list", "a..b=x"]],
)
def test_a_malformed_condition_is_a_usage_error(tokens: list[str]) -> None:
    with pytest.raises(UsageError) as err:
        parse(tokens, CATALOGUE)
    assert err.value.code == "QUERY.BAD_CONDITION" and err.value.exit_status == 2
    assert err.value.field == "conditions"


def test_good_conditions_still_parse() -> None:
    cmd = parse(["zone", "list", "name=a.b", "uuid!=null"], CATALOGUE)
    assert getattr(cmd, "args", None) == {"conditions": ["name=a.b", "uuid!=null"]}
