"""Regression: ``~=``/``!~=`` on an int field (``num~=1``) emitted SQLAlchemy's
"Integer does not include operator like_op" deprecation (an error under the test suite, and
an InvalidRequestError in a future SQLAlchemy). The compiler now casts the column to text.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.querymodel import DataSet, QueryModelService, Row, build_node, load
from zmn.api.querylang import parse_condition
from zmn.core.query import QuerySpec


def test_like_on_int_field_compares_the_text_form(tmp_path: Path) -> None:
    node = build_node(tmp_path, [QueryModelService], memory=True)
    data = DataSet()
    for i, num in enumerate([1, 12, 21, 3, None]):
        data.rows["Qa"].append(Row(f"{i:032x}", f"a{i}", num, None, False, "red"))
    with node.db.tx() as s:
        load(s, data)

    def names(cond: str) -> list[str]:
        with node.db.session() as s:
            result = node.compiler.run(s, QuerySpec("Qa", [parse_condition(cond)]), None)
        return [inv["name"] for inv in result["inventories"]]

    assert names("num~=1") == ["a0", "a1", "a2"]
    assert names("num~=1%") == ["a0", "a1"]
    assert names("num!~=1") == ["a3"]  # null never satisfies a comparison
    node.db.dispose()
