"""The query compiler: conditions over fields and joins to SQL, with bound values only.

Semantics (documented in man/zcli-query.7):

* a condition on a field of the queried type compares that column; SQL null never satisfies
  a comparison, only ``=null`` / ``!=null``;
* a condition through joins (``vmNics.l3Network.name=pub``) holds when *some* joined row
  satisfies it (existential), compiled as nested ``IN (SELECT ...)`` so no row repeats;
* tag pseudo-fields hold when some tag of that kind satisfies the comparison; their negative
  operators (``!=``, ``!?=``, ``!~=``) hold when *no* tag satisfies the positive one;
* text compares ignoring case, as zstack-cli's: ``=``, ``!=``, ``?=``, ``!?=``, ``~=`` and
  ``!~=`` on a string field or a tag fold both sides with the database's ``lower()``
  (``name=WEB`` finds ``web``; SQLite folds ASCII letters only, MariaDB and PostgreSQL other
  letters too) and an index on ``lower(name)`` serves ``name=X`` and ``name~=prefix%``;
  UUIDs (``uuid``, ``...Uuid``) compare exactly, an enum value is matched to its declared
  spelling (``state=running``), and ``<``, ``>`` and sorting go by code point
  (zmn/core/nocase.py);
* every field name is checked against the registry; values are bound parameters.

Paging: rows come ordered by ``sortBy`` (``asc``/``desc``) then the primary key ascending.
A reply cut by ``limit`` carries ``next``, an opaque cursor holding the sort value and the key
of its last row; ``after=<cursor>`` continues right behind that row (keyset paging: a page
deep in the table costs what the first page costs). ``start`` is SQL ``OFFSET``.

Counting: a count whose only condition goes through a join to *child* rows whose reference
to the queried row is guaranteed (``RefSpec.guaranteed``, e.g. every NIC belongs to an
existing VM) counts the distinct references on the child table instead of probing each
queried row (``count(DISTINCT vm_nic.vmInstanceUuid)``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, cast, false, func, literal, or_, select
from sqlalchemy.sql import ColumnElement

from zmn.api.errors import InvalidArgument, PermissionDenied
from zmn.api.message import byte_sized, parse_size
from zmn.api.querylang import TAG_FIELDS, Condition, parse_condition
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.nocase import folded, folded_like
from zmn.core.resource import FieldInfo, ResourceRegistry, ResourceType

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.bus import Principal

MAX_LIMIT = 100_000
MAX_INT = 2**63 - 1  # the widest integer column of every backend (BIGINT)
NEGATIVE = {"!=": "=", "!?=": "?=", "!~=": "~="}


@dataclass
class QuerySpec:
    resource: str
    conditions: list[Condition] = field(default_factory=list)
    limit: int = 1000
    start: int = 0
    after: str | None = None
    count: bool = False
    replyWithCount: bool = False
    sortBy: str | None = None
    sortDirection: str = "asc"
    fields: list[str] | None = None
    groupBy: str | None = None


def parse_conditions(items: list[Any]) -> list[Condition]:
    """Conditions from strings (``name=z1``) or objects (``{"name","op","value"}``)."""
    out: list[Condition] = []
    for item in items:
        if isinstance(item, str):
            out.append(parse_condition(item))
        elif isinstance(item, dict) and "name" in item and "op" in item:
            op = str(item["op"])
            value = item.get("value")
            if value is None and op not in ("=null", "!=null"):
                raise InvalidArgument(
                    f"condition on {item['name']!r} ({op}) has no value; give one, or use"
                    " op =null or !=null",
                    code="QUERY.BAD_CONDITION",
                    field="conditions",
                )
            text = (
                f"{item['name']}{op}" if op in ("=null", "!=null") else f"{item['name']}{op}{value}"
            )
            out.append(parse_condition(text))
        else:
            raise InvalidArgument(
                f"bad query condition {item!r}: give a string like name=z1 or"
                ' {"name": ..., "op": ..., "value": ...}',
                field="conditions",
            )
    return out


def admin_field(rt: ResourceType, name: str, principal: Principal | None, where: str) -> None:
    """Refuse a normal account's condition, sort or selection on an admin-only field."""
    if name in rt.admin_fields and principal is not None and not principal.is_admin:
        raise PermissionDenied(
            f"{rt.name}.{name} is shown to admins only", code="IDENTITY.ADMIN_ONLY", field=where
        )


class QueryCompiler:
    def __init__(self, registry: ResourceRegistry) -> None:
        self.registry = registry

    # ----------------------------------------------------------------- conditions

    def where(
        self, rt: ResourceType, cond: Condition, principal: Principal | None = None
    ) -> ColumnElement[bool]:
        return self._path(rt, cond.path, cond, principal)

    def _path(
        self,
        rt: ResourceType,
        path: list[str],
        cond: Condition,
        principal: Principal | None = None,
    ) -> ColumnElement[bool]:
        head = path[0]
        if len(path) == 1 and head not in rt.fields and head in rt.field_aliases():
            # ZStack's list field (attachedClusterUuids): the path through a join it stands for
            return self._path(rt, rt.aliases[head].split("."), cond, principal)
        if len(path) == 1:
            if head in TAG_FIELDS:
                return self._tag(rt, head, cond)
            info = rt.field_or_error(head, cond.name)
            admin_field(rt, head, principal, cond.name)
            return leaf(rt.column(head), info, cond)
        exp = rt.expansions.get(head)
        if exp is None:
            # a field name used as a join, or an unknown join: say which joins exist
            from zmn.api.message import suggest

            close = suggest(head, rt.expansions)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise InvalidArgument(
                f"{rt.name} has no join {head!r} in {cond.name!r}{hint}"
                f" (joins: {', '.join(rt.expansions) or '-'})",
                code="QUERY.UNKNOWN_JOIN",
                field=cond.name,
                choices=list(rt.expansions),
            )
        target = self.registry.get(exp.target)
        # A join sees only the rows the caller could query itself; otherwise a condition
        # through it would tell a tenant whether another account has a matching resource.
        inner = and_(
            self._path(target, path[1:], cond, principal),
            *self.visibility(target, principal, cond.name),
        )
        if exp.via is not None:
            table, to_source, to_target = exp.via
            target_ids = select(target.column("uuid")).where(inner)
            sub = select(getattr(table, to_source)).where(getattr(table, to_target).in_(target_ids))
        else:
            sub = select(target.column(exp.remote)).where(inner)
        clause: ColumnElement[bool] = rt.column(exp.local).in_(sub)
        return clause

    def _tag(self, rt: ResourceType, name: str, cond: Condition) -> ColumnElement[bool]:
        kind = "User" if name == "__userTag__" else "System"
        base = [TagVO.type == kind, TagVO.resourceType == rt.name]
        key = rt.column(rt.primary_key[0])
        info = FieldInfo("tag", "string")
        if cond.op in ("=null", "!=null"):
            any_tag = select(TagVO.resourceUuid).where(*base)
            found: ColumnElement[bool] = key.in_(any_tag)
            return ~found if cond.op == "=null" else found
        positive = NEGATIVE.get(cond.op)
        check = Condition(cond.name, positive or cond.op, cond.value)
        sub = select(TagVO.resourceUuid).where(*base, leaf(TagVO.tag, info, check))
        matched: ColumnElement[bool] = key.in_(sub)
        return ~matched if positive else matched

    # ----------------------------------------------------------------- statements

    def filters(self, rt: ResourceType, spec: QuerySpec, principal: Principal | None) -> list[Any]:
        clauses: list[Any] = [self.where(rt, c, principal) for c in spec.conditions]
        clauses.extend(self.visibility(rt, principal))
        return clauses

    def visibility(
        self, rt: ResourceType, principal: Principal | None, joined: str = ""
    ) -> list[Any]:
        """Clauses limiting ``rt`` to the rows a normal account may see (none for admins)."""
        clauses: list[Any] = []
        if principal is not None and not principal.is_admin:
            if rt.admin_only:
                via = f" (joined in {joined!r})" if joined else ""
                raise PermissionDenied(
                    f"only admin accounts can query {rt.name}{via}", code="IDENTITY.ADMIN_ONLY"
                )
            if rt.owned:
                owned = select(AccountResourceRefVO.resourceUuid).where(
                    AccountResourceRefVO.accountUuid == principal.accountUuid
                )
                clauses.append(rt.column("uuid").in_(owned))
            if rt.access_filter is not None:
                clauses.extend(rt.access_filter(principal))
        return clauses

    def run(self, session: Session, spec: QuerySpec, principal: Principal | None) -> dict[str, Any]:
        rt = self.registry.get(spec.resource)
        if spec.groupBy:
            where = and_(True, *self.filters(rt, spec, principal))
            info = rt.field_or_error(spec.groupBy, "groupBy")
            admin_field(rt, info.name, principal, "groupBy")
            col = rt.column(info.name)
            stmt = select(col, func.count()).where(where).group_by(col).order_by(col)
            groups = [{info.name: _out(v), "total": n} for v, n in session.execute(stmt)]
            return {"groups": groups}
        if spec.count:
            return {"total": self.count(session, rt, spec, principal)}
        if spec.limit < 0 or spec.limit > MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 0 and {MAX_LIMIT}", field="limit")
        if spec.start < 0 or spec.start > MAX_INT:
            raise InvalidArgument(f"start must be between 0 and {MAX_INT}", field="start")
        if spec.sortDirection not in ("asc", "desc"):
            raise InvalidArgument("sortDirection must be asc or desc", field="sortDirection")
        if spec.after and spec.start:
            raise InvalidArgument(
                "give start (OFFSET) or after (a cursor), not both", field="after"
            )
        sort = rt.field_or_error(spec.sortBy, "sortBy") if spec.sortBy else None
        if sort is not None:
            admin_field(rt, sort.name, principal, "sortBy")
        key = self._key_lookup(rt, spec, principal)
        if key is not None:  # `uuid=X`: one prepared statement, at most one row
            rows = rt.rows_where(session, rt.primary_key[0], [key])
        else:
            order: list[Any] = []
            if sort is not None:
                col = rt.column(sort.name)
                by = col.desc() if spec.sortDirection == "desc" else col.asc()
                if not _backend_sorts_nulls_low(session):  # make NULL sort low everywhere
                    by = by.nulls_last() if spec.sortDirection == "desc" else by.nulls_first()
                order.append(by)
            order.extend(rt.column(k) for k in rt.primary_key)
            page = and_(True, *self.filters(rt, spec, principal))
            if spec.after:
                cursor = decode_cursor(rt, spec, sort, spec.after)
                page = and_(page, keyset(rt, sort, spec.sortDirection, cursor))
            stmt = select(*rt.row_columns).where(page).order_by(*order).limit(spec.limit + 1)
            if spec.start:
                stmt = stmt.offset(spec.start)
            rows = list(session.execute(stmt))
        cut = len(rows) > spec.limit
        rows = rows[: spec.limit]
        invs = rt.inventories(session, rows, spec.fields)
        if rt.admin_fields and principal is not None and not principal.is_admin:
            for name in spec.fields or ():
                admin_field(rt, name, principal, "fields")
            invs = [{k: v for k, v in inv.items() if k not in rt.admin_fields} for inv in invs]
        if spec.fields:
            for name in spec.fields:
                if name not in rt.fields and not any(name in inv for inv in invs[:1]):
                    rt.field_or_error(name, "fields")
            invs = [{k: inv.get(k) for k in spec.fields} for inv in invs]
        out: dict[str, Any] = {"inventories": invs}
        if cut and rows:
            out["next"] = encode_cursor(rt, spec, sort, rows[-1])
        if spec.replyWithCount:
            out["total"] = self.count(session, rt, spec, principal)
        return out

    def _key_lookup(
        self, rt: ResourceType, spec: QuerySpec, principal: Principal | None
    ) -> str | None:
        """The key value when the query is ``<key>=X`` alone (no option that changes rows)."""
        if len(spec.conditions) != 1 or len(rt.primary_key) != 1 or spec.limit < 1:
            return None
        cond = spec.conditions[0]
        name = rt.primary_key[0]
        if cond.op != "=" or cond.path != [name] or spec.start or spec.after:
            return None
        info = rt.fields.get(name)
        if info is None or info.type != "string" or self.visibility(rt, principal):
            return None
        return cond.value or ""

    def count(
        self,
        session: Session,
        rt: ResourceType,
        spec: QuerySpec,
        principal: Principal | None,
    ) -> int:
        """How many rows match: ``count(*)``, or distinct child references (see the module doc)."""
        child = self._child_count(rt, spec, principal)
        if child is not None:
            total = session.scalar(child)
        else:
            where = and_(True, *self.filters(rt, spec, principal))
            total = session.scalar(select(func.count()).select_from(rt.model).where(where))
        return int(total or 0)

    def _child_count(
        self, rt: ResourceType, spec: QuerySpec, principal: Principal | None
    ) -> Any | None:
        """``SELECT count(DISTINCT child.ref) FROM child WHERE ...`` when it counts exactly the
        same rows: one condition, through a join to children whose reference to ``rt`` always
        names an existing row, with no visibility clause on ``rt`` itself."""
        if len(spec.conditions) != 1 or rt.primary_key != ["uuid"]:
            return None
        cond = spec.conditions[0]
        if len(cond.path) < 2 or self.visibility(rt, principal):
            return None
        exp = rt.expansions.get(cond.path[0])
        if exp is None or exp.via is not None or exp.local != "uuid" or not exp.guaranteed:
            return None
        target = self.registry.get(exp.target)
        ref = target.column(exp.remote)
        inner = and_(
            self._path(target, cond.path[1:], cond, principal),
            *self.visibility(target, principal, cond.name),
        )
        return select(func.count(ref.distinct())).where(inner)


# --------------------------------------------------------------------------- keyset paging


def _backend_sorts_nulls_low(session: Session) -> bool:
    """Whether the backend by itself sorts NULL before every value in ascending order (SQLite,
    MySQL, MariaDB) or after (PostgreSQL, where the compiler asks for NULLS FIRST/LAST so
    that results and cursors are the same on every engine)."""
    bind = session.get_bind()
    return bind.dialect.name != "postgresql"


def _bad_cursor(why: str) -> InvalidArgument:
    return InvalidArgument(
        f"after: not a cursor of this query ({why}); pass the `next` of the previous reply",
        code="QUERY.BAD_CURSOR",
        field="after",
    )


def _encode_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()  # full precision: the cursor must compare exactly
    return value


def encode_cursor(rt: ResourceType, spec: QuerySpec, sort: FieldInfo | None, row: Any) -> str:
    """The opaque cursor behind ``row``: [1, sortBy, direction, sort value, *key values]."""
    body: list[Any] = [1, sort.name if sort else None, spec.sortDirection]
    body.append(_encode_value(getattr(row, sort.name)) if sort else None)
    body.extend(getattr(row, k) for k in rt.primary_key)
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_value(info: FieldInfo, value: Any) -> Any:
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "int": number and isinstance(value, int),
        "float": number,
        "bool": isinstance(value, bool),
    }.get(info.type, isinstance(value, str))
    if not ok:
        raise _bad_cursor(f"{info.name} value {value!r}")
    if info.type == "timestamp":
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise _bad_cursor(f"{info.name} value {value!r}") from None
    return value


def decode_cursor(
    rt: ResourceType, spec: QuerySpec, sort: FieldInfo | None, text: str
) -> tuple[Any, list[Any]]:
    """(sort value, key values) from a cursor made by :func:`encode_cursor` for this query."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError):
        raise _bad_cursor("unreadable") from None
    keys = rt.primary_key
    if not isinstance(body, list) or len(body) != 4 + len(keys) or body[0] != 1:
        raise _bad_cursor("unreadable")
    if body[1] != (sort.name if sort else None) or body[2] != spec.sortDirection:
        raise _bad_cursor(
            f"it was made for sortBy={body[1]} sortDirection={body[2]}, not"
            f" sortBy={spec.sortBy} sortDirection={spec.sortDirection}"
        )
    value = _decode_value(sort, body[3]) if sort else None
    key_values = [
        _decode_value(rt.fields.get(k) or FieldInfo(k, "string"), v)
        for k, v in zip(keys, body[4:], strict=True)
    ]
    if any(v is None for v in key_values):
        raise _bad_cursor("no key")
    return value, key_values


def keyset(
    rt: ResourceType,
    sort: FieldInfo | None,
    direction: str,
    cursor: tuple[Any, list[Any]],
) -> ColumnElement[bool]:
    """Rows strictly after the cursor in ``ORDER BY sort direction, key...`` (keys ascending,
    never null; the sort column may hold NULL, which sorts low on every engine: first when
    ascending, last when descending)."""
    value, key_values = cursor
    cols = [rt.column(k) for k in rt.primary_key]
    # (k1, k2, ...) > (v1, v2, ...), spelled out so every backend can use the key's index
    ties: list[ColumnElement[bool]] = []
    for i, (col, v) in enumerate(zip(cols, key_values, strict=True)):
        ties.append(and_(*(c == x for c, x in zip(cols[:i], key_values[:i], strict=True)), col > v))
    past_key = or_(*ties) if len(ties) > 1 else ties[0]
    if sort is None:
        return past_key
    col = rt.column(sort.name)
    nulls_after = direction == "desc"  # NULL sorts low: after every value when descending
    if value is None:
        same = and_(col.is_(None), past_key)
        return same if nulls_after else or_(same, col.is_not(None))
    bound = literal(value) if isinstance(value, bool) else value
    beyond = col > bound if direction == "asc" else col < bound
    parts = [beyond, and_(col == bound, past_key)]
    if nulls_after:
        parts.append(col.is_(None))
    return or_(*parts)


def _out(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="milliseconds")
    return value


def convert_value(info: FieldInfo, text: str, field_name: str) -> Any:
    """A condition's text as the column's type, or an error naming the field."""
    try:
        if info.type == "int":
            # memorySize>2G: a size with its suffix, as everywhere a size is taken
            sized = byte_sized(info.name) and text.strip()[-1:].isalpha()
            number = parse_size(text, field_name) if sized else int(text)
            if not -MAX_INT - 1 <= number <= MAX_INT:
                raise ValueError(text)  # no column holds it; the database would overflow
            return number
        if info.type == "float":
            return float(text)
        if info.type == "bool":
            low = text.lower()
            if low not in ("true", "false"):
                raise ValueError(text)
            return low == "true"
        if info.type == "timestamp":
            return dt.datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise InvalidArgument(
            f"{field_name} is a {info.type} field; {text!r} is not a {info.type}",
            code="QUERY.BAD_VALUE",
            field=field_name,
        ) from None
    if info.enum and text not in info.enum:
        # enum values are matched ignoring case (state=running) against their declared
        # spelling, so the comparison stays exact and keeps its index; an unknown value is
        # not an error (an old value may still match rows), but nothing can match a typo
        same = [e for e in info.enum if e.lower() == text.lower()]
        return same[0] if len(same) == 1 else text
    return text


def folds(info: FieldInfo) -> bool:
    """Whether conditions on the field compare text ignoring case: strings other than UUIDs
    (``uuid``, ``...Uuid``: exact and fast) and enums (matched to their spelling first)."""
    return (
        info.type == "string"
        and not info.enum
        and info.name != "uuid"
        and not info.name.endswith("Uuid")
    )


def leaf(col: Any, info: FieldInfo, cond: Condition) -> ColumnElement[bool]:
    """One comparison; text compares ignoring case as zstack-cli's (zmn/core/nocase.py)."""
    op = cond.op
    if op == "=null":
        return col.is_(None)  # type: ignore[no-any-return]
    if op == "!=null":
        return col.is_not(None)  # type: ignore[no-any-return]
    value = cond.value or ""
    if op in ("~=", "!~="):
        pattern = value if ("%" in value or "_" in value) else f"%{value}%"
        if info.type != "string":  # LIKE is a text operator: compare the value's text form
            col = cast(col, String)
        return folded_like(col, pattern, op == "!~=", lambda text: literal(text, String))
    fold = folds(info) and op in ("=", "!=", "?=", "!?=")
    if fold:
        col = folded(col)
    if op in ("?=", "!?="):
        items: list[Any] = [convert_value(info, v, cond.name) for v in cond.values()]
        if not items:  # SQL's `NOT IN ()` is true even for null; null satisfies no comparison
            return false() if op == "?=" else col.is_not(None)  # type: ignore[no-any-return]
        if fold:
            items = [folded(literal(v, String)) for v in items]
        return col.in_(items) if op == "?=" else col.not_in(items)  # type: ignore[no-any-return]
    v = convert_value(info, value, cond.name)
    if isinstance(v, bool):  # a bare True/False only takes = and != in SQLAlchemy; bind it
        v = literal(v)
    if fold:
        v = folded(literal(v, String))
    if op == "=":
        return col == v  # type: ignore[no-any-return]
    if op == "!=":
        return col != v  # type: ignore[no-any-return]
    if op == ">":
        return col > v  # type: ignore[no-any-return]
    if op == "<":
        return col < v  # type: ignore[no-any-return]
    if op == ">=":
        return col >= v  # type: ignore[no-any-return]
    if op == "<=":
        return col <= v  # type: ignore[no-any-return]
    raise InvalidArgument(f"unknown operator {op!r}", field=cond.name)
