"""Regression (found by test_query_property): ``label!?=`` with an empty list matched rows
whose label is null, because SQL's ``NOT IN ()`` is true even for null, while ``label!?=a``
did not; the documented rule is that null satisfies no comparison. An empty ``!?=`` list now
means "is not null" and an empty ``?=`` list matches nothing.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.querymodel import DataSet, QueryModelService, Row, build_node, load
from zmn.api.querylang import parse_condition
from zmn.core.query import QuerySpec


def test_empty_in_lists_follow_null_semantics(tmp_path: Path) -> None:
    node = build_node(tmp_path, [QueryModelService], memory=True)
    data = DataSet()
    data.rows["Qa"] = [
        Row("0" * 32, "labelled", 1, "x", False, "red"),
        Row("1" * 32, "unlabelled", None, None, False, "red"),
    ]
    data.tags = [("Qa", "0" * 32, "User", "t")]
    with node.db.tx() as s:
        load(s, data)

    def names(cond: str) -> list[str]:
        with node.db.session() as s:
            result = node.compiler.run(s, QuerySpec("Qa", [parse_condition(cond)]), None)
        return [inv["name"] for inv in result["inventories"]]

    assert names("label!?=") == ["labelled"]
    assert names("label!?= , ") == ["labelled"]
    assert names("label!?=a") == ["labelled"]
    assert names("label?=") == []
    assert names("num!?=") == ["labelled"]
    # tags: the negative holds when no tag is in the (empty) list, i.e. for every row
    assert names("__userTag__!?=") == ["labelled", "unlabelled"]
    assert names("__userTag__?=") == []
    node.db.dispose()
