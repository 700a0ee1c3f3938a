"""Regression: ``Query<Type> start=100000000000000000000`` (beyond 64 bits) reached SQLite as
the OFFSET and raised OverflowError, reported as an InternalError. ``start`` is now checked
like ``limit``. Found by tests/unit/test_fuzz_query.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.querymodel import QueryModelService, build_node
from zmn.api.errors import InvalidArgument
from zmn.core.query import QuerySpec


def test_a_huge_start_is_an_invalid_argument(tmp_path: Path) -> None:
    node = build_node(tmp_path, [QueryModelService], memory=True)
    with node.db.session() as s:
        with pytest.raises(InvalidArgument) as err:
            node.compiler.run(s, QuerySpec("Qa", start=10**20), None)
        assert err.value.field == "start"
        assert node.compiler.run(s, QuerySpec("Qa", start=2**63 - 1), None) == {"inventories": []}
    node.db.dispose()
