"""Regression: an integer condition value wider than 64 bits (``num=999...9``, 30 digits)
reached SQLite, which raised OverflowError ("Python int too large to convert to SQLite
INTEGER"): an InternalError for a typo. The compiler now refuses it as QUERY.BAD_VALUE.
Found by tests/unit/test_fuzz_query.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.querymodel import DataSet, QueryModelService, Row, build_node, load
from zmn.api.errors import InvalidArgument
from zmn.api.querylang import parse_condition
from zmn.core.query import QuerySpec

BIG = "9" * 30


def test_integers_beyond_64_bits_are_bad_values(tmp_path: Path) -> None:
    node = build_node(tmp_path, [QueryModelService], memory=True)
    data = DataSet()
    data.rows["Qa"] = [Row("0" * 32, "max", 2**63 - 1, None, False, "red")]
    with node.db.tx() as s:
        load(s, data)

    def names(cond: str) -> list[str]:
        with node.db.session() as s:
            result = node.compiler.run(s, QuerySpec("Qa", [parse_condition(cond)]), None)
        return [inv["name"] for inv in result["inventories"]]

    for cond in (f"num={BIG}", f"num>-{BIG}", f"num?=1,{BIG}", f"num<={2**63}"):
        with pytest.raises(InvalidArgument) as err:
            names(cond)
        assert err.value.code == "QUERY.BAD_VALUE" and err.value.field == "num"
    assert names(f"num={2**63 - 1}") == ["max"]  # the widest value still works
    assert names(f"num>{-(2**63)}") == ["max"]
    node.db.dispose()
