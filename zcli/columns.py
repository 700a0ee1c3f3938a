"""Columns for people: what a table shows and how a cell gets its value (issue 15, item 2).

A column is a path through a row: a field (``state``), a field of embedded rows
(``vmNics.ip``), or a join (``host.name``, ``cluster.zone.name``, ``zone -c cluster.name``)
answered by one query per joined type and level, never one per row. The default columns of
a resource type for people come from the catalogue: its ``columns`` read for people --
``uuid`` becomes a short ``id``, a reference (``hostUuid``, a field whose catalogue entry
names a ``resource``) the referenced resource's name (``host``), fields with ``"unit":
"bytes"`` human sizes, timestamps ages -- plus ``ip`` for rows carrying NICs.

A :data:`Lookup` fetches rows of a type by one field: ``lookup("Host", "uuid", uuids)``.
"""

from __future__ import annotations

from zcli.catalogue import Catalogue, Record, Resource, suggest
from zcli.inputs import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Lookup = Callable[[str, str, list[str]], list[dict[str, Any]]]

STATE_FIELDS = ("state", "status")


class Column(Record):
    """``header`` over the values at ``path``; ``kind`` says how a cell is written:
    ``text``, ``short`` (8 characters of a UUID), ``bytes``, ``age``, ``state``."""

    _fields = ("header", "path", "kind")

    def __init__(self, header: str, path: str, kind: str = "text") -> None:
        self.header = header
        self.path = path
        self.kind = kind


def field_info(res: Resource | None, name: str) -> dict[str, Any]:
    if res is None:
        return {}
    for f in res.fields:
        if f["name"] == name:
            return f
    return {}


def kind_of(res: Resource | None, name: str) -> str:
    info = field_info(res, name)
    if info.get("unit") == "bytes":
        return "bytes"
    if info.get("type") == "timestamp" or name in ("createDate", "lastOpDate"):
        return "age"
    if name in STATE_FIELDS:
        return "state"
    return "text"


def ref_column(res: Resource | None, name: str) -> Column | None:
    """``hostUuid`` -> the column ``host`` = ``host.name`` (``hostUuid`` through the join)."""
    target = field_info(res, name).get("resource")
    if res is None or not target or not name.endswith("Uuid"):
        return None
    join = name[: -len("Uuid")]
    if not any(j["name"] == join for j in res.joins):
        return None
    return Column(short_header(join), f"{join}.name")


def short_header(name: str) -> str:
    """``l3Network`` -> ``l3``, ``vmInstance`` -> ``vm``, ``instanceOffering`` ->
    ``offering``: the words people say."""
    if name.endswith("Network") and name[-9:-7].lower() in ("l2", "l3"):
        name = name[: -len("Network")]
    elif name.endswith("Instance") and len(name) > len("Instance"):
        name = name[: -len("Instance")]
    elif name.startswith("instance") and len(name) > len("instance"):
        name = name[len("instance") :]
    return name[:1].lower() + name[1:]


def people_header(name: str, kind: str) -> str:
    """``memorySize`` -> ``memory``, ``availableCapacity`` -> ``available``, ``cpuNum`` ->
    ``cpu``, ``createDate`` -> ``age``: short headers leave room for the values."""
    if kind == "age":
        return "age" if name == "createDate" else name.removesuffix("Date")
    for suffix in ("Capacity", "Size", "Num"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def default_columns(res: Resource | None, rows: list[dict[str, Any]], wide: bool) -> list[Column]:
    """The columns a person reads: name first, a short id, references as names, an ``ip``
    for rows that carry NICs, an age; ``wide`` adds the full UUID and every reference."""
    shown: list[str] = list(res.columns) if res else []
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row))
    if not shown:
        shown = list(present)
    if wide and res is not None:
        shown += [f["name"] for f in res.fields if f.get("resource") and f["name"] not in shown]
        shown += [c for c in res.columns if c not in shown]
    cols: list[Column] = []
    if "name" in shown or "name" in present:
        cols.append(Column("name", "name"))
    if "uuid" in present or "uuid" in shown:
        cols.append(Column("uuid", "uuid") if wide else Column("id", "uuid", "short"))
    for name in shown:
        if name in ("name", "uuid"):
            continue
        ref = ref_column(res, name)
        kind = kind_of(res, name)
        if kind == "text" and name.endswith("Uuid"):  # a UUID of no declared type: short
            kind = "short"
        cols.append(ref or Column(people_header(name, kind), name, kind))
        if name in STATE_FIELDS and "vmNics" in present and "ip" not in shown:
            cols.append(Column("ip", "vmNics.ip"))
    if "createDate" in present and not any(c.path == "createDate" for c in cols):
        cols.append(Column("age", "createDate", "age"))
    return cols


def chosen_columns(
    res: Resource | None, names: list[str], rows: list[dict[str, Any]]
) -> list[Column]:
    """``-c`` columns: fields, embedded paths and joins; an unknown one is a usage error."""
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row))
    known = [*present, *(f["name"] for f in res.fields)] if res else list(present)
    joins = [j["name"] for j in res.joins] if res else []
    cols = []
    for name in names:
        head = name.split(".", 1)[0]
        if name in known or (("." in name) and (head in present or head in joins)):
            cols.append(Column(name, name, kind_of(res, name)))
            continue
        choices = [*dict.fromkeys(known), *(f"{j}." for j in joins)]
        close = suggest(name, choices)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(
            f"no column {name!r}{hint} (columns: fields of the rows, or join paths such as"
            f" {joins[0] + '.name' if joins else 'vmNics.ip'})",
            code="CLI.UNKNOWN_COLUMN",
            field="columns",
            choices=choices,
        )
    return cols


class Resolver:
    """Values at column paths for a set of rows, with one lookup per joined type and level."""

    def __init__(self, cat: Catalogue | None, lookup: Lookup | None) -> None:
        self.cat = cat
        self.lookup = lookup

    def values(self, res: Resource | None, rows: list[dict[str, Any]], path: str) -> list[Any]:
        head, _, rest = path.partition(".")
        if not rest:
            return [row.get(head) for row in rows]
        if any(head in row for row in rows):  # embedded rows (vmNics) or objects
            flat: list[dict[str, Any]] = []
            owners: list[int] = []
            for i, row in enumerate(rows):
                inner = row.get(head)
                items = inner if isinstance(inner, list) else [inner] if inner else []
                for item in items:
                    if isinstance(item, dict):
                        flat.append(item)
                        owners.append(i)
            got = self.values(self.join_target(res, head), flat, rest) if flat else []
            per: list[list[Any]] = [[] for _ in rows]
            for i, value in zip(owners, got, strict=True):
                per[i].append(value)
            return [
                _many(p) if isinstance(row.get(head), list) else (p[0] if p else None)
                for row, p in zip(rows, per, strict=True)
            ]
        return self._joined(res, rows, head, rest)

    def join_target(self, res: Resource | None, join: str) -> Resource | None:
        if res is None or self.cat is None:
            return None
        for j in res.joins:
            if j["name"] == join:
                return self.cat.resource_of_type(j["resource"])
        return None

    def _joined(
        self, res: Resource | None, rows: list[dict[str, Any]], join: str, rest: str
    ) -> list[Any]:
        target = self.join_target(res, join)
        if res is None or target is None or self.lookup is None or not target.query:
            return [None for _ in rows]
        local = f"{join}Uuid"
        if field_info(res, local).get("resource") == target.name:  # forward: hostUuid
            keys = sorted({str(r[local]) for r in rows if r.get(local)})
            found = self.lookup(target.name, "uuid", keys) if keys else []
            by_uuid = {str(t.get("uuid")): t for t in found}
            order = list(by_uuid.values())
            vals = dict(zip(by_uuid, self.values(target, order, rest), strict=True))
            return [vals.get(str(r.get(local))) for r in rows]
        remote = next(
            (f["name"] for f in target.fields if f.get("resource") == res.name), None
        )  # reverse: zone -> cluster.zoneUuid
        if remote is None:
            return [None for _ in rows]
        keys = sorted({str(r["uuid"]) for r in rows if r.get("uuid")})
        found = self.lookup(target.name, remote, keys) if keys else []
        got = self.values(target, found, rest)
        per: dict[str, list[Any]] = {}
        for item, value in zip(found, got, strict=True):
            per.setdefault(str(item.get(remote)), []).append(value)
        # the node orders the joined rows by UUID: sorted values read (and compare) better
        return [_many(sorted(per.get(str(r.get("uuid")), []), key=str)) for r in rows]


def _many(values: list[Any]) -> str | None:
    texts = [str(v) for v in values if v not in (None, "")]
    return ",".join(texts) if texts else None
