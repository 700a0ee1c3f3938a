"""The query compiler: conditions over fields and joins to SQL, with bound values only.

Semantics (documented in man/zcli-query.7):

* a condition on a field of the queried type compares that column; SQL null never satisfies
  a comparison, only ``=null`` / ``!=null``;
* a condition through joins (``vmNics.l3Network.name=pub``) holds when *some* joined row
  satisfies it (existential), compiled as nested ``IN (SELECT ...)`` so no row repeats;
* tag pseudo-fields hold when some tag of that kind satisfies the comparison; their negative
  operators (``!=``, ``!?=``, ``!~=``) hold when *no* tag satisfies the positive one;
* every field name is checked against the registry; values are bound parameters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, cast, false, func, literal, select
from sqlalchemy.sql import ColumnElement

from zmn.api.errors import InvalidArgument, PermissionDenied
from zmn.api.querylang import TAG_FIELDS, Condition, parse_condition
from zmn.core.models import AccountResourceRefVO, TagVO
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
        if len(path) == 1:
            if head in TAG_FIELDS:
                return self._tag(rt, head, cond)
            info = rt.field_or_error(head, cond.name)
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
        clauses = self.filters(rt, spec, principal)
        where = and_(True, *clauses)
        if spec.groupBy:
            info = rt.field_or_error(spec.groupBy, "groupBy")
            col = rt.column(info.name)
            stmt = select(col, func.count()).where(where).group_by(col).order_by(col)
            groups = [{info.name: _out(v), "total": n} for v, n in session.execute(stmt)]
            return {"groups": groups}
        if spec.count:
            total = session.scalar(select(func.count()).select_from(rt.model).where(where))
            return {"total": int(total or 0)}
        if spec.limit < 0 or spec.limit > MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 0 and {MAX_LIMIT}", field="limit")
        if spec.start < 0 or spec.start > MAX_INT:
            raise InvalidArgument(f"start must be between 0 and {MAX_INT}", field="start")
        order: list[Any] = []
        if spec.sortBy:
            info = rt.field_or_error(spec.sortBy, "sortBy")
            col = rt.column(info.name)
            if spec.sortDirection not in ("asc", "desc"):
                raise InvalidArgument("sortDirection must be asc or desc", field="sortDirection")
            order.append(col.desc() if spec.sortDirection == "desc" else col.asc())
        order.extend(rt.column(k) for k in rt.primary_key)
        stmt = select(rt.model).where(where).order_by(*order).limit(spec.limit).offset(spec.start)
        rows = list(session.scalars(stmt))
        invs = rt.inventories(session, rows)
        if spec.fields:
            for name in spec.fields:
                if name not in rt.fields and not any(name in inv for inv in invs[:1]):
                    rt.field_or_error(name, "fields")
            invs = [{k: inv.get(k) for k in spec.fields} for inv in invs]
        out: dict[str, Any] = {"inventories": invs}
        if spec.replyWithCount:
            total = session.scalar(select(func.count()).select_from(rt.model).where(where))
            out["total"] = int(total or 0)
        return out


def _out(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="milliseconds")
    return value


def convert_value(info: FieldInfo, text: str, field_name: str) -> Any:
    """A condition's text as the column's type, or an error naming the field."""
    try:
        if info.type == "int":
            number = int(text)
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
        # not an error (an old value may still match rows), but nothing can match a typo
        return text
    return text


def leaf(col: Any, info: FieldInfo, cond: Condition) -> ColumnElement[bool]:
    op = cond.op
    if op == "=null":
        return col.is_(None)  # type: ignore[no-any-return]
    if op == "!=null":
        return col.is_not(None)  # type: ignore[no-any-return]
    value = cond.value or ""
    if op in ("?=", "!?="):
        items = [convert_value(info, v, cond.name) for v in cond.values()]
        if not items:  # SQL's `NOT IN ()` is true even for null; null satisfies no comparison
            return false() if op == "?=" else col.is_not(None)
        return col.in_(items) if op == "?=" else col.not_in(items)  # type: ignore[no-any-return]
    if op in ("~=", "!~="):
        pattern = value if ("%" in value or "_" in value) else f"%{value}%"
        if info.type != "string":  # LIKE is a text operator: compare the value's text form
            col = cast(col, String)
        return col.like(pattern) if op == "~=" else col.not_like(pattern)  # type: ignore[no-any-return]
    v = convert_value(info, value, cond.name)
    if isinstance(v, bool):  # a bare True/False only takes = and != in SQLAlchemy; bind it
        v = literal(v)
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
