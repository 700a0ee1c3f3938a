"""Regression: an ordering comparison on a bool field (``flag>false``) crashed inside
SQLAlchemy ("Only '=', '!=' ... operators can be used with None/True/False"), which the API
reported as an InternalError. The compiler now binds the converted bool as a parameter.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.querymodel import DataSet, QueryModelService, Row, build_node, load
from zmn.api.querylang import parse_condition
from zmn.core.query import QuerySpec


def test_bool_fields_take_every_comparison(tmp_path: Path) -> None:
    node = build_node(tmp_path, [QueryModelService], memory=True)
    data = DataSet()
    data.rows["Qa"] = [
        Row("0" * 32, "off", None, None, False, "red"),
        Row("1" * 32, "on", None, None, True, "red"),
    ]
    with node.db.tx() as s:
        load(s, data)

    def names(cond: str) -> list[str]:
        with node.db.session() as s:
            result = node.compiler.run(s, QuerySpec("Qa", [parse_condition(cond)]), None)
        return [inv["name"] for inv in result["inventories"]]

    assert names("flag>false") == ["on"]
    assert names("flag>=false") == ["off", "on"]
    assert names("flag<true") == ["off"]
    assert names("flag<=TRUE") == ["off", "on"]
    assert names("flag=true") == ["on"]
    assert names("flag!=true") == ["off"]
    node.db.dispose()
