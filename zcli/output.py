"""Printing results: table, json, yaml, csv, value, or UUIDs only (``-q``).

A result takes one of four shapes: *rows* (a query's ``inventories``, ``groups``), an
*object* (an ``inventory`` unwrapped, or any other result), a *count* (``{"total": N}``) or
*nothing* (``{}`` from a delete, in the text formats). Table columns come from the resource
type's ``columns`` in the catalogue; ``-c`` picks others. rich and PyYAML are imported only
by the formats that use them.
"""

from __future__ import annotations

import json

from zcli.catalogue import Record, suggest
from zmn.api.text import inert

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any, TextIO

    from zcli.catalogue import Resource
    from zcli.options import Options


class Shaped(Record):
    _fields = ("kind", "data", "own_columns")

    def __init__(self, kind: str, data: Any, own_columns: bool = False) -> None:
        self.kind = kind  # rows | object | count | nothing
        self.data = data  # what -o json prints
        self.own_columns = own_columns  # rows that are not inventories (groupBy): their keys


def shape(result: Any) -> Shaped:
    if isinstance(result, dict):
        keys = set(result)
        if isinstance(result.get("inventories"), list):
            return Shaped("rows", result if "total" in keys else result["inventories"])
        if isinstance(result.get("groups"), list):
            return Shaped("rows", result["groups"], own_columns=True)
        if keys == {"total"}:
            return Shaped("count", result)
        if keys == {"inventory"}:
            return Shaped("object", result["inventory"])
        return Shaped("object" if result else "nothing", result)
    if isinstance(result, list):
        return Shaped("rows", result)
    return Shaped("object", result)


def rows_of(shaped: Shaped) -> list[Any]:
    if shaped.kind == "rows":
        data = shaped.data
        return list(data["inventories"] if isinstance(data, dict) else data)
    if shaped.kind in ("object", "count"):
        return [shaped.data]
    return []


def render(result: Any, opts: Options, resource: Resource | None, out: TextIO, err: TextIO) -> None:
    shaped = shape(result)
    if opts.quiet:
        for row in rows_of(shaped):
            if isinstance(row, dict) and row.get("uuid"):
                out.write(f"{row['uuid']}\n")
        return
    if opts.output == "json":
        out.write(json.dumps(shaped.data, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    if opts.output == "yaml":
        import yaml

        out.write(
            yaml.safe_dump(
                shaped.data, sort_keys=False, allow_unicode=True, default_flow_style=False
            )
        )
        return
    if shaped.kind == "nothing":
        return
    rows = rows_of(shaped)
    if rows and not all(isinstance(r, dict) for r in rows):
        for row in rows:
            out.write(cell(row) + "\n")
        return
    if shaped.kind != "rows" and opts.output == "table":
        obj = rows[0]
        keys = opts.columns or list(obj)
        _warn_unknown(opts.columns, [obj], resource, err)
        from zcli.table import print_properties

        print_properties([(k, cell(obj.get(k))) for k in keys], out)
        return
    columns = opts.columns or default_columns(rows, None if shaped.own_columns else resource)
    _warn_unknown(opts.columns, rows, resource, err)
    matrix = [[cell(r.get(c)) for c in columns] for r in rows]
    if opts.output == "value":
        for line in matrix:
            out.write("\t".join(line) + "\n")
    elif opts.output == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        if not opts.no_header:
            writer.writerow(columns)
        writer.writerows(matrix)
    else:
        from zcli.table import print_table

        print_table(columns, matrix, out, header=not opts.no_header)


def default_columns(rows: list[dict[str, Any]], resource: Resource | None) -> list[str]:
    """The resource type's catalogue columns that the rows carry, else the rows' own keys."""
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row))
    if resource is not None:
        picked = [c for c in resource.columns if c in present or not rows]
        if picked:
            return picked
    return list(present)


def cell(value: Any) -> str:
    """A table, summary or value cell: control and bidi characters shown as escapes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return inert(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))
    return inert(str(value))


def _warn_unknown(
    columns: list[str], rows: list[dict[str, Any]], resource: Resource | None, err: TextIO
) -> None:
    """A typo in ``-c`` prints an empty column; say so on stderr instead of failing late."""
    if not columns or not rows:
        return
    known: dict[str, None] = {}
    for row in rows:
        known.update(dict.fromkeys(row))
    if resource is not None:
        known.update(dict.fromkeys(f["name"] for f in resource.fields))
    for col in columns:
        if col not in known:
            close = suggest(col, known)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            err.write(f"warning: no column {col!r}{hint}\n")
