"""The metadata registry: resource types, their fields, references and expansions.

One registry drives the SQL compiler, the catalogue, completion, man pages and dashboard
columns. A service declares its resource types; the registry derives

* fields from the table's columns (types, enums, docs),
* a *forward* expansion for every reference column (``Cluster.zoneUuid`` -> ``cluster.zone``),
* a *reverse* expansion on the referenced type (``zone.cluster``),
* expansions through link tables (``cluster.primaryStorage``), and
* expansions that plugins inject into other services' types (``vmNic.eip``), and
* ZStack's names beside ours (``aliases``): a join under another name (``Volume.image`` for
  ``rootImage``) or a list field that is a path through a join (``PrimaryStorage.
  attachedClusterUuids`` for ``cluster.uuid``), so queries written for ZStack run as written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, bindparam, inspect, select
from sqlalchemy.orm import Session

from zmn.api.errors import InvalidArgument
from zmn.api.message import byte_sized, suggest

if TYPE_CHECKING:
    from zmn.core.bus import Principal

OnDelete = Literal["cascade", "detach", "keep"]


@dataclass(frozen=True)
class RefSpec:
    """A column that holds the UUID of another resource.

    ``on_delete`` says what deleting the referenced resource does to rows holding it:
    ``cascade`` (they depend on it: refuse unless cascading, then delete them first),
    ``detach`` (the column is cleared), ``keep`` (nothing; a historical pointer).
    """

    target: str
    on_delete: OnDelete = "cascade"
    forward: str | None = None  # expansion name on this type; default lowerCamel(target)
    reverse: str | None = None  # expansion name on the target; default lowerCamel(this type)
    # The column is null or names an existing target row, never a missing one (an invariant
    # the services keep and CheckConsistency verifies): a count through the reverse join may
    # then count distinct references on this table instead of probing the target's rows.
    guaranteed: bool = False


@dataclass(frozen=True)
class LinkSpec:
    """A many-to-many attachment through a link table (e.g. cluster <-> primary storage)."""

    table: Any  # ORM class of the link table
    left: str  # type name on one side
    left_column: str
    right: str
    right_column: str
    left_name: str | None = None  # expansion name on the left type (default lowerCamel(right))
    right_name: str | None = None  # expansion name on the right type


@dataclass
class Expansion:
    """A join from one resource type to another, usable in query paths."""

    name: str
    target: str
    local: str  # column of the source type
    remote: str  # column of the target type (or of the link table, see ``via``)
    via: tuple[Any, str, str] | None = None  # (link table, column to source, column to target)
    plugin: str = ""
    doc: str = ""
    guaranteed: bool = False  # reverse join whose ``remote`` column always names a source row
    alias_of: str = ""  # ZStack's name for the join named here (same rows)


@dataclass
class FieldInfo:
    name: str
    type: str
    enum: list[str] | None = None
    doc: str = ""
    nullable: bool = True


@dataclass
class ResourceType:
    """One resource type as the registry knows it."""

    name: str
    model: Any
    service: str
    cli: str
    columns: list[str] = field(default_factory=lambda: ["uuid", "name"])
    refs: dict[str, RefSpec] = field(default_factory=dict)
    enums: dict[str, list[str]] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)
    owned: bool = False  # rows belong to accounts; normal accounts see only their own
    admin_only: bool = False  # normal accounts cannot query it at all
    hidden_fields: tuple[str, ...] = ()
    # fields that only admins see and query (an image's URL); dropped from tenants' rows
    admin_fields: tuple[str, ...] = ()
    # Extra WHERE clauses limiting what a non-admin principal sees (queries and name/UUID
    # resolution), for types whose ownership is not an AccountResourceRef row: a job's
    # ``accountUuid`` column, a tag's tagged resource.
    access_filter: Callable[[Principal], list[Any]] | None = None
    inventory_hook: Callable[[Session, list[dict[str, Any]]], None] | None = None
    # keys the hook only adds (a VM's ``vmNics``, ``allVolumes``): a query whose ``fields``
    # name none of them is answered without running it. Empty: the hook always runs (it may
    # change the row's own fields, as the audit log's ``args``).
    hook_adds: tuple[str, ...] = ()
    state_field: str | None = None
    summary: str = ""
    expansions: dict[str, Expansion] = field(default_factory=dict)
    fields: dict[str, FieldInfo] = field(default_factory=dict)
    # ZStack's names: alias -> one of our joins (``rootImage``) or a path ending in a field
    # (``cluster.uuid``: a list field, true when some joined row matches)
    aliases: dict[str, str] = field(default_factory=dict)
    # statements of :meth:`rows_where`, built once: SQLAlchemy then skips rebuilding and
    # re-keying them on every call (most of the cost of a one-row select)
    _statements: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    # how :meth:`inventory` reads a row: (field count, keys, attrgetter, timestamp keys)
    _plan: tuple[int, tuple[str, ...], Any, tuple[str, ...]] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        mapper = inspect(self.model)
        first, last = ("uuid", "name", "description"), ("createDate", "lastOpDate")
        cols = sorted(
            mapper.columns,
            key=lambda c: (
                (0, first.index(c.key))
                if c.key in first
                else (2, last.index(c.key))
                if c.key in last
                else (1, 0)
            ),
        )
        for col in cols:
            if col.key in self.hidden_fields:
                continue
            self.fields[col.key] = FieldInfo(
                col.key,
                column_type(col),
                self.enums.get(col.key),
                self.docs.get(col.key, col.doc or ""),
                bool(col.nullable),
            )

    @property
    def primary_key(self) -> list[str]:
        return [c.key for c in inspect(self.model).primary_key]

    @property
    def has_uuid(self) -> bool:
        return "uuid" in self.fields

    def column(self, name: str) -> Any:
        return getattr(self.model, name)

    @property
    def row_columns(self) -> list[Any]:
        """Every mapped column: a select of these gives rows whose attributes are the fields
        (what :meth:`inventory` reads) without building ORM objects."""
        cols = self._statements.get("columns")
        if cols is None:
            cols = self._statements["columns"] = [
                col if col.key == key else col.label(key)
                for key, col in inspect(self.model).columns.items()
            ]
        return cols  # type: ignore[no-any-return]

    @property
    def uuid_probe(self) -> Any:
        """``SELECT uuid FROM <table> WHERE uuid = :uuid`` (Core, built once): does a row exist?"""
        stmt = self._statements.get("uuid_probe")
        if stmt is None:
            col = inspect(self.model).columns["uuid"]
            stmt = self._statements["uuid_probe"] = select(col).where(col == bindparam("uuid"))
        return stmt

    def rows_where(
        self, session: Session, column: str, values: list[Any], order: tuple[str, ...] = ()
    ) -> list[Any]:
        """Rows (see :attr:`row_columns`) whose ``column`` is one of ``values``, ordered by
        ``order`` then the primary key; the statement is built once per shape."""
        if not values:
            return []
        if session.autoflush and (session.new or session.dirty or session.deleted):
            session.flush()  # a Core select does not autoflush: see the session's own rows
        one = len(values) == 1
        key = (column, order, one)
        stmt = self._statements.get(key)
        if stmt is None:
            # table columns, not ORM attributes: a plain Core statement, no ORM result loading
            table = inspect(self.model).columns
            col = table[column]
            where = col == bindparam("v") if one else col.in_(bindparam("v", expanding=True))
            keys = [k for k in self.primary_key if k not in order]
            stmt = (
                select(*self.row_columns)
                .where(where)
                .order_by(*(table[k] for k in (*order, *keys)))
            )
            self._statements[key] = stmt
        return list(session.execute(stmt, {"v": values[0] if one else list(values)}))

    def field_or_error(self, name: str, path: str = "") -> FieldInfo:
        info = self.fields.get(name)
        if info is None:
            choices = [*self.fields, *self.expansions]
            close = suggest(name, choices)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            where = f" in {path!r}" if path else ""
            raise InvalidArgument(
                f"{self.name} has no field {name!r}{where}{hint}"
                f" (fields: {', '.join(self.fields)}; joins: {', '.join(self.expansions) or '-'})",
                code="QUERY.UNKNOWN_FIELD",
                field=path or name,
                choices=choices,
            )
        return info

    def inventory(self, row: Any) -> dict[str, Any]:
        """The row's fields (an ORM object, a Core row or anything with the attributes), the
        timestamps as ISO 8601 text; several per create, hence one C-level attribute fetch."""
        plan = self._plan
        if plan is None or plan[0] != len(self.fields):
            keys = tuple(self.fields)
            stamps = tuple(k for k, f in self.fields.items() if f.type == "timestamp")
            plan = self._plan = (len(keys), keys, attrgetter(*keys), stamps)
        _n, keys, fetch, stamps = plan
        values = fetch(row)
        out = dict(zip(keys, values if len(keys) > 1 else (values,), strict=True))
        for key in stamps:
            value = out[key]
            if isinstance(value, dt.datetime):
                out[key] = value.isoformat(timespec="milliseconds")
        return out

    def inventories(
        self, session: Session, rows: list[Any], fields: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The rows' inventories; given the ``fields`` a query selects, the hook runs only
        when it may add or change one of them (see :attr:`hook_adds`)."""
        invs = [self.inventory(r) for r in rows]
        if self.inventory_hook and invs and self.hook_needed(fields):
            self.inventory_hook(session, invs)
        return invs

    def hook_needed(self, fields: list[str] | None) -> bool:
        if not fields or not self.hook_adds:
            return True
        return any(f in self.hook_adds or f not in self.fields for f in fields)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "cli": self.cli,
            "summary": self.summary,
            "columns": self.columns,
            "owned": self.owned,
            "fields": [
                {
                    "name": f.name,
                    "type": f.type,
                    **({"enum": f.enum} if f.enum else {}),
                    **({"unit": "bytes"} if f.type == "int" and byte_sized(f.name) else {}),
                    **({"doc": f.doc} if f.doc else {}),
                    **({"resource": self.refs[f.name].target} if f.name in self.refs else {}),
                }
                for f in self.fields.values()
            ],
            "joins": [
                {
                    "name": e.name,
                    "resource": e.target,
                    **({"plugin": e.plugin} if e.plugin else {}),
                    **({"aliasOf": e.alias_of} if e.alias_of else {}),
                    **({"doc": e.doc} if e.doc else {}),
                }
                for e in self.expansions.values()
            ],
            **({"aliases": self.field_aliases()} if self.field_aliases() else {}),
        }

    def field_aliases(self) -> dict[str, str]:
        """Aliases that stand for a field through a join (joins' aliases are expansions)."""
        return {
            a: p for a, p in self.aliases.items() if "." in p and p.split(".")[0] in self.expansions
        }


def column_type(col: Column[Any]) -> str:
    t = col.type
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, Integer):
        return "int"
    if isinstance(t, Float):
        return "float"
    if isinstance(t, DateTime):
        return "timestamp"
    return "string"


def lower_camel(name: str) -> str:
    """``VmInstance`` -> ``vmInstance``, ``L3Network`` -> ``l3Network``, ``IpRange`` -> ``ipRange``."""
    return name[0].lower() + name[1:] if name else name


class ResourceRegistry:
    """Every resource type of the loaded services, and the joins between them."""

    def __init__(self) -> None:
        self.types: dict[str, ResourceType] = {}
        self.links: list[LinkSpec] = []
        self._injected: list[tuple[str, Expansion]] = []
        self._by_cli: dict[str, ResourceType] = {}

    def add(self, rt: ResourceType) -> None:
        if rt.name in self.types:
            raise ValueError(f"resource type {rt.name} declared twice")
        self.types[rt.name] = rt
        self._by_cli[rt.cli] = rt

    def add_link(self, link: LinkSpec) -> None:
        self.links.append(link)

    def inject(self, type_name: str, expansion: Expansion) -> None:
        """A plugin adds a join to another service's type (applied in :meth:`finalize`)."""
        self._injected.append((type_name, expansion))

    def finalize(self) -> None:
        """Derive expansions once every service has declared its types."""
        for rt in self.types.values():
            rt.expansions.clear()
        for rt in list(self.types.values()):
            for column, ref in rt.refs.items():
                target = self.types.get(ref.target)
                if target is None:
                    continue  # the target's plugin is disabled: no join
                fwd = ref.forward or lower_camel(ref.target)
                rt.expansions.setdefault(fwd, Expansion(fwd, ref.target, column, "uuid"))
                rev = ref.reverse or lower_camel(rt.name)
                target.expansions.setdefault(
                    rev, Expansion(rev, rt.name, "uuid", column, guaranteed=ref.guaranteed)
                )
        for link in self.links:
            left, right = self.types.get(link.left), self.types.get(link.right)
            if left is None or right is None:
                continue
            ln = link.left_name or lower_camel(link.right)
            rn = link.right_name or lower_camel(link.left)
            left.expansions.setdefault(
                ln,
                Expansion(
                    ln,
                    link.right,
                    "uuid",
                    "uuid",
                    (link.table, link.left_column, link.right_column),
                ),
            )
            right.expansions.setdefault(
                rn,
                Expansion(
                    rn, link.left, "uuid", "uuid", (link.table, link.right_column, link.left_column)
                ),
            )
        for type_name, expansion in self._injected:
            if type_name in self.types and expansion.target in self.types:
                self.types[type_name].expansions[expansion.name] = expansion
        for rt in self.types.values():
            for alias, path in rt.aliases.items():
                of = rt.expansions.get(path)
                if of is not None and alias not in rt.expansions and alias not in rt.fields:
                    rt.expansions[alias] = replace(of, name=alias, alias_of=of.name)

    def get(self, name: str) -> ResourceType:
        rt = self.types.get(name)
        if rt is None:
            close = suggest(name, self.types)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise InvalidArgument(f"unknown resource type {name!r}{hint}", field="resourceType")
        return rt

    def by_cli(self, cli: str) -> ResourceType | None:
        return self._by_cli.get(cli)

    def dependents(self, type_name: str) -> list[tuple[ResourceType, str, RefSpec]]:
        """Types with a reference column to ``type_name``: (type, column, spec)."""
        out = []
        for rt in self.types.values():
            for column, ref in rt.refs.items():
                if ref.target == type_name:
                    out.append((rt, column, ref))
        return out

    def links_of(self, type_name: str) -> list[tuple[Any, str]]:
        """Link tables holding ``type_name`` UUIDs: (table, column)."""
        out = []
        for link in self.links:
            if link.left == type_name:
                out.append((link.table, link.left_column))
            if link.right == type_name:
                out.append((link.table, link.right_column))
        return out
