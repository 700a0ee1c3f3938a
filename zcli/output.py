"""Printing results: table, json, yaml, csv, value, or UUIDs only (``-q``).

A result takes one of four shapes: *rows* (a query's ``inventories``, ``groups``), an
*object* (an ``inventory`` unwrapped, or any other result), a *count* (``{"total": N}``) or
*nothing* (``{}`` from a delete, in the text formats). Table columns come from the resource
type's ``columns`` in the catalogue; ``-c`` picks others. rich and PyYAML are imported only
by the formats that use them.
"""

from __future__ import annotations

from zcli.catalogue import Record
from zmn.api.text import inert

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any, TextIO

    from zcli.catalogue import Catalogue, Resource
    from zcli.columns import Lookup
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


def render(
    result: Any,
    opts: Options,
    resource: Resource | None,
    out: TextIO,
    err: TextIO,
    *,
    cat: Catalogue | None = None,
    lookup: Lookup | None = None,
    keep_order: bool = True,
) -> None:
    """Print a result. ``-o table`` on a terminal and ``-o wide`` anywhere are for people
    (:mod:`zcli.people`); the rest is the script contract, unchanged: ``-c`` may name join
    paths (``host.name``, fetched with ``lookup``, one query per joined type) and an unknown
    column is an error."""
    shaped = shape(result)
    if opts.quiet:
        for row in rows_of(shaped):
            if isinstance(row, dict) and row.get("uuid"):
                out.write(f"{row['uuid']}\n")
        return
    if opts.output == "json":
        import json

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
    res = None if shaped.own_columns else resource
    people = opts.output == "wide" or (opts.output == "table" and out.isatty())
    resolver: Any = None  # join columns' values: zcli.columns, imported only when needed
    if people or opts.columns or shaped.kind != "rows":
        from zcli.columns import Resolver

        resolver = Resolver(cat, lookup)
    if people:
        _for_people(shaped, rows, opts, res, resolver, out, lookup, keep_order)
        return
    if opts.columns and rows:
        from zcli.columns import chosen_columns

        chosen_columns(res, opts.columns, rows)  # an unknown column is an error
    if shaped.kind != "rows" and opts.output == "table":
        obj = rows[0]
        keys = opts.columns or list(obj)
        from zcli.table import print_properties

        got = _values(keys, [obj], resolver, res)
        print_properties([(k, cell(v[0])) for k, v in zip(keys, got, strict=True)], out)
        return
    columns = opts.columns or default_columns(rows, res)
    values = _values(columns, rows, resolver, res) if opts.columns else None
    matrix = (
        [[cell(v[i]) for v in values] for i in range(len(rows))]
        if values is not None
        else [[cell(r.get(c)) for c in columns] for r in rows]
    )
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


def _for_people(
    shaped: Shaped,
    rows: list[dict[str, Any]],
    opts: Options,
    res: Resource | None,
    resolver: Any,
    out: TextIO,
    lookup: Lookup | None,
    keep_order: bool,
) -> None:
    from zcli import people

    if shaped.kind == "rows" or opts.columns:
        people.print_rows(
            rows,
            res,
            resolver,
            out,
            columns=opts.columns,
            wide=opts.output == "wide",
            header=not opts.no_header,
            keep_order=keep_order or shaped.kind != "rows",
        )
        return
    obj = rows[0]
    tags: list[str] = []
    if lookup is not None and obj.get("uuid") and res is not None:
        from zmn.api.errors import ZmnError

        for kind in ("SystemTag", "UserTag"):
            try:
                found = lookup(kind, "resourceUuid", [str(obj["uuid"])])
            except ZmnError:  # tags this account may not read: the summary goes without
                continue
            tags += [str(t.get("tag")) for t in found]
    people.print_summary(people.summary_pairs(obj, res, resolver, tags), out)


def fields_read(resource: Resource | None, opts: Options, out: TextIO) -> list[str] | None:
    """The fields a list printed for scripts reads (``-q``: the UUIDs; a table, csv or
    value without ``-c``: the type's columns), so that the node is asked for those alone
    (``fields=``: a smaller reply, and a VM list without its NICs and volumes); None when
    the output reads more (json, yaml, a table for people, ``-c``) or the type is unknown.
    The printed bytes are the same either way: the columns are fields every row carries."""
    if resource is None or opts.columns:
        return None
    known = {f.get("name") for f in resource.fields}
    if opts.quiet:
        wanted = ["uuid"]
    elif opts.output in ("csv", "value") or (opts.output == "table" and not out.isatty()):
        wanted = list(resource.columns)
    else:
        return None
    return wanted if wanted and all(c in known for c in wanted) else None


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
        import json

        return inert(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))
    return inert(str(value))


def _values(
    columns: list[str], rows: list[dict[str, Any]], resolver: Any, res: Resource | None
) -> list[list[Any]]:
    """Column-major values of fields, embedded paths and joins (see zcli.columns)."""
    return [resolver.values(res, rows, c) for c in columns]
