"""Create, update, delete and look-up shared by every resource service.

* names or UUIDs: every reference parameter accepts a UUID or a unique name;
* creates are idempotent on ``resourceUuid`` and attach tags and ownership in one transaction;
* deletes follow the registry's reference rules: dependents either refuse the delete (naming
  them) or, with ``cascade=true``, are deleted first through their own service's delete API,
  so each service cleans up after itself; nothing is ever orphaned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, bindparam, func, literal, select, update
from sqlalchemy import delete as sql_delete

from zmn.api.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    not_found,
    upper_snake,
)
from zmn.api.message import UUID_RE, ApiMessage, CreateMessage, params_of
from zmn.core.db import new_uuid, utcnow
from zmn.core.models import AccountResourceRefVO, TagVO
from zmn.core.nocase import folded
from zmn.core.resource import ResourceType
from zmn.core.state import StateMachine

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.bus import Principal
    from zmn.core.fastsql import AnyConnection
    from zmn.core.node import Node
    from zmn.core.service import Call


# --------------------------------------------------------------------------- references


def resolve(
    session: Session | AnyConnection,
    node: Node,
    principal: Principal,
    type_name: str,
    value: str,
    field: str,
    read: bool = False,
) -> str:
    """The UUID of the resource named by ``value``: a UUID, or a unique name (the exact name
    first; failing that, one that differs only in letter case, as queries compare).

    ``read`` (``Ref(read=True)``): the handler reads the row by UUID and answers NotFound
    itself, so a UUID whose check would be existence alone is taken as it is."""
    rt = node.resources.types.get(type_name)
    if rt is None:
        raise InvalidArgument(
            f"{field}: resource type {type_name} is not available (its plugin is disabled)",
            field=field,
        )
    if rt.admin_only and not principal.is_admin:
        # hosts, clusters, storage...: invisible to normal accounts, so naming one is refused
        # whatever the value, and the answer cannot tell which exist
        raise PermissionDenied(
            f"{field}: only admin accounts can choose a {type_name}",
            code="IDENTITY.ADMIN_ONLY",
            field=field,
        )
    model = rt.model
    if principal.is_admin or rt.access_filter is None:
        # statements built once per type: existence and ownership only
        owned = rt.owned and not principal.is_admin
        params = {"value": value, "account": principal.accountUuid} if owned else {"value": value}
        if UUID_RE.match(value):
            if read and not owned:  # the handler looks it up (and fails naming the field)
                return value
            if session.scalar(_uuid_check(model, owned), params) is None:
                raise not_found(type_name, value, field)
            return value
        if not hasattr(model, "name"):  # tags, sessions, jobs by API name: UUIDs only
            raise not_found(type_name, value, field)
        uuids = list(session.scalars(_name_lookup(model, owned, fold=False), params))
        if not uuids:  # no exact name: a name that differs only in case (as queries compare)
            uuids = list(session.scalars(_name_lookup(model, owned, fold=True), params))
        return _one_named(uuids, type_name, value, field)
    owned_clause = _owned_clause(rt, principal)
    if UUID_RE.match(value):
        found = session.scalar(select(model.uuid).where(model.uuid == value, *owned_clause))
        if found is None:
            raise not_found(type_name, value, field)
        return value
    if not hasattr(model, "name"):
        raise not_found(type_name, value, field)
    uuids = list(
        session.scalars(select(model.uuid).where(model.name == value, *owned_clause).limit(3))
    )
    if not uuids:
        named = folded(model.name) == folded(literal(value, String))
        uuids = list(session.scalars(select(model.uuid).where(named, *owned_clause).limit(3)))
    return _one_named(uuids, type_name, value, field)


def _one_named(uuids: list[Any], type_name: str, value: str, field: str) -> str:
    """The one UUID a name found; not found or ambiguous otherwise."""
    if not uuids:
        raise not_found(type_name, value, field)
    if len(uuids) > 1:
        raise Conflict(
            f"{field}: more than one {type_name} is named {value!r}; give the UUID",
            code="RESOURCE.AMBIGUOUS_NAME",
            field=field,
            candidates=uuids,
        )
    return str(uuids[0])


_UUID_CHECKS: dict[tuple[Any, bool], Any] = {}


def _uuid_check(model: Any, owned: bool) -> Any:
    """``SELECT uuid WHERE uuid = :value`` (and owned by ``:account``), cached per model."""
    stmt = _UUID_CHECKS.get((model, owned))
    if stmt is None:
        stmt = select(model.uuid).where(model.uuid == bindparam("value"))
        if owned:
            ref = AccountResourceRefVO
            stmt = stmt.where(
                model.uuid.in_(
                    select(ref.resourceUuid).where(ref.accountUuid == bindparam("account"))
                )
            )
        _UUID_CHECKS[(model, owned)] = stmt
    return stmt


_NAME_LOOKUPS: dict[tuple[Any, bool, bool], Any] = {}


def _name_lookup(model: Any, owned: bool, *, fold: bool) -> Any:
    """``SELECT uuid WHERE name = :value`` (folded: both sides lower-cased), owned by
    ``:account`` when ``owned``; at most three rows (one is the answer, two say ambiguous).
    Cached per model."""
    key = (model, owned, fold)
    stmt = _NAME_LOOKUPS.get(key)
    if stmt is None:
        value = bindparam("value", type_=String)
        named = folded(model.name) == folded(value) if fold else model.name == value
        stmt = select(model.uuid).where(named)
        if owned:
            ref = AccountResourceRefVO
            stmt = stmt.where(
                model.uuid.in_(
                    select(ref.resourceUuid).where(ref.accountUuid == bindparam("account"))
                )
            )
        stmt = _NAME_LOOKUPS[key] = stmt.limit(3)
    return stmt


def _owned_clause(rt: ResourceType, principal: Principal) -> list[Any]:
    if principal.is_admin:
        return []
    clauses: list[Any] = []
    if rt.owned:
        clauses.append(
            rt.model.uuid.in_(
                select(AccountResourceRefVO.resourceUuid).where(
                    AccountResourceRefVO.accountUuid == principal.accountUuid
                )
            )
        )
    if rt.access_filter is not None:
        clauses.extend(rt.access_filter(principal))
    return clauses


_REFS: dict[type, list[tuple[str, str, bool]]] = {}


def _refs_of(cls: type[ApiMessage]) -> list[tuple[str, str, bool]]:
    """(parameter, resource type, whether the handler reads the row itself) of every
    reference parameter of an API, cached per API."""
    refs = _REFS.get(cls)
    if refs is None:
        spec = cls.__api__  # type: ignore[attr-defined]
        refs = [(p.name, p.ref, p.ref_read) for p in params_of(cls) if p.ref]
        if spec.resource and spec.verb != "create" and "uuid" in cls.__struct_fields__:
            refs.append(("uuid", spec.resource, False))
        _REFS[cls] = refs
    return refs


def resolve_message_refs(node: Node, principal: Principal, msg: ApiMessage) -> None:
    """Replace names by UUIDs in every reference parameter of ``msg``, checking they exist."""
    refs = _refs_of(type(msg))
    if not refs:
        return
    # statements built once, on the fast path, unless a type's access filter applies to the
    # caller (its clauses are built per call, which a Core connection caches)
    db = node.db
    reader = db.fast() if _cached_lookups_only(node, principal, msg, refs) else db.engine.connect()
    with reader as s:
        for name, type_name, read in refs:
            value = getattr(msg, name)
            if value is None:
                continue
            assert type_name is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
            if isinstance(value, list):
                setattr(
                    msg,
                    name,
                    [resolve(s, node, principal, type_name, v, name, read) for v in value],
                )
            else:
                setattr(msg, name, resolve(s, node, principal, type_name, value, name, read))


def _cached_lookups_only(
    node: Node, principal: Principal, msg: ApiMessage, refs: list[tuple[str, str, bool]]
) -> bool:
    """Whether :func:`resolve` checks every reference of ``msg`` (a UUID or a name) with its
    cached statements: no access filter applies to the caller."""
    admin = principal.is_admin
    for name, type_name, _read in refs:
        value = getattr(msg, name)
        if value is None:  # not given: not looked up
            continue
        if not admin:
            rt = node.resources.types.get(type_name)
            if rt is not None and rt.access_filter is not None:
                return False
        if isinstance(value, str):
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return False
    return True


def get_row(session: Session, rt: ResourceType, uuid: str, field: str = "uuid") -> Any:
    row = session.get(rt.model, uuid)
    if row is None:
        raise not_found(rt.name, uuid, field)
    return row


# --------------------------------------------------------------------------- create


def existing_inventory(call: Call, type_name: str, msg: CreateMessage) -> dict[str, Any] | None:
    """For an idempotent create: the inventory of the resource already made with this UUID."""
    if not msg.resourceUuid:
        return None
    if not UUID_RE.match(msg.resourceUuid):
        raise InvalidArgument("resourceUuid must be 32 lowercase hex digits", field="resourceUuid")
    if msg.resourceUuid in call.node.minted:
        return None  # made by this node for this very call: nothing exists under it yet
    rt = call.node.resources.get(type_name)
    # Nearly every create is new: one primary-key probe on a Core connection answers that
    # without an ORM session (an identity-map lookup and a mapped load cost ten times more).
    with call.node.db.engine.connect() as conn:
        if conn.execute(rt.uuid_probe, {"uuid": msg.resourceUuid}).first() is None:
            return None
    with call.tx() as s:
        row = s.get(rt.model, msg.resourceUuid)
        if row is None:
            return None
        if not call.principal.is_admin and rt.owned:
            owner = s.get(AccountResourceRefVO, msg.resourceUuid)
            if owner is None or owner.accountUuid != call.principal.accountUuid:
                raise Conflict(
                    "resourceUuid is taken", code="RESOURCE.UUID_TAKEN", field="resourceUuid"
                )
        return rt.inventories(s, [row])[0]


def insert(
    call: Call,
    session: Session,
    type_name: str,
    row: Any,
    msg: CreateMessage | None = None,
    *,
    owner: str | None = None,
) -> None:
    """Add a new resource row with its tags and owner inside the caller's transaction."""
    rt = call.node.resources.get(type_name)
    if not getattr(row, "uuid", None):
        row.uuid = (msg.resourceUuid if msg else None) or new_uuid()
    if msg is not None and getattr(row, "description", None) is None and msg.description:
        row.description = msg.description
    session.add(row)
    if msg is not None:
        for tag in msg.systemTags:
            call.node.tag_patterns.validate(type_name, tag)
            session.add(_tag_row(row.uuid, type_name, "System", tag))
        for tag in msg.userTags:
            session.add(_tag_row(row.uuid, type_name, "User", tag))
    if rt.owned:
        session.add(
            AccountResourceRefVO(
                resourceUuid=row.uuid,
                resourceType=type_name,
                accountUuid=owner or call.principal.accountUuid,
            )
        )


def _tag_row(resource_uuid: str, resource_type: str, kind: str, tag: str) -> TagVO:
    return TagVO(
        uuid=new_uuid(), resourceUuid=resource_uuid, resourceType=resource_type, type=kind, tag=tag
    )


async def create(
    call: Call,
    type_name: str,
    row: Any,
    msg: CreateMessage | None = None,
    *,
    check: Callable[[Session], None] | None = None,
) -> dict[str, Any]:
    """Insert one resource (idempotent on ``resourceUuid``) and publish ``/<type>/created``."""
    if msg is not None:
        existing = existing_inventory(call, type_name, msg)
        if existing is not None:
            return {"inventory": existing}
    rt = call.node.resources.get(type_name)
    with call.tx() as s:
        if check is not None:
            check(s)
        insert(call, s, type_name, row, msg)
        s.flush()
        inv = rt.inventories(s, [row])[0]
    await call.publish(f"/{rt.cli}/created", {"resourceType": type_name, "inventory": inv})
    return {"inventory": inv}


def unique_name(
    session: Session, rt: ResourceType, name: str, scope: dict[str, Any] | None = None
) -> None:
    """Refuse a second resource of this type with the same name (within ``scope``)."""
    clauses = [
        rt.model.name == name,
        *[getattr(rt.model, k) == v for k, v in (scope or {}).items()],
    ]
    if session.scalar(select(func.count()).select_from(rt.model).where(*clauses)):
        where = "".join(f" in {k}={v}" for k, v in (scope or {}).items())
        raise Conflict(
            f"a {rt.name} named {name!r} already exists{where}",
            code=f"{upper_snake(rt.name)}.DUPLICATE_NAME",
            field="name",
        )


# --------------------------------------------------------------------------- update


async def update_fields(
    call: Call, type_name: str, uuid: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply the non-None ``changes`` and publish ``/<type>/updated``."""
    rt = call.node.resources.get(type_name)
    values = {k: v for k, v in changes.items() if v is not None}
    with call.tx() as s:
        row = get_row(s, rt, uuid)
        for key, value in values.items():
            setattr(row, key, value)
        row.lastOpDate = utcnow()
        s.flush()
        inv = rt.inventories(s, [row])[0]
    await call.publish(
        f"/{rt.cli}/updated", {"resourceType": type_name, "inventory": inv, "changed": list(values)}
    )
    return {"inventory": inv}


async def change_state(
    call: Call, type_name: str, uuid: str, event: str, machine: StateMachine, field: str = "state"
) -> dict[str, Any]:
    """Apply a state event through the state table; publish ``/<type>/state/change``."""
    rt = call.node.resources.get(type_name)
    with call.tx() as s:
        row = get_row(s, rt, uuid)
        old = getattr(row, field)
        new = machine.next(uuid, old, event)
        setattr(row, field, new)
        row.lastOpDate = utcnow()
        s.flush()
        inv = rt.inventories(s, [row])[0]
    if old != new:
        await publish_state_change(call, rt, inv, old, new, field)
    return {"inventory": inv}


async def publish_state_change(
    call: Call, rt: ResourceType, inv: dict[str, Any], old: str, new: str, field: str = "state"
) -> None:
    path = f"/{rt.cli}/{'state' if field == 'state' else field}/change"
    await call.publish(
        path,
        {
            "resourceType": rt.name,
            "uuid": inv.get("uuid"),
            "field": field,
            "oldState": old,
            "newState": new,
            "inventory": inv,
        },
    )


# --------------------------------------------------------------------------- delete


def dependents(
    session: Session, node: Node, type_name: str, uuid: str
) -> list[tuple[ResourceType, list[str]]]:
    """Resources that depend on this one (``on_delete='cascade'`` references to it)."""
    found = []
    for rt, column, ref in node.resources.dependents(type_name):
        if ref.on_delete != "cascade":
            continue
        uuids = list(
            session.scalars(select(rt.model.uuid).where(getattr(rt.model, column) == uuid))
        )
        if uuids:
            found.append((rt, uuids))
    return found


async def delete(
    call: Call,
    type_name: str,
    uuid: str,
    *,
    cascade: bool = False,
    cleanup: Callable[[Session, Any], None] | None = None,
) -> dict[str, Any]:
    """Delete a resource: refuse while dependents exist, or delete them first when cascading."""
    node = call.node
    rt = node.resources.get(type_name)
    with call.tx() as s:
        row = get_row(s, rt, uuid)
        name = row.name
        deps = dependents(s, node, type_name, uuid)
    if deps and not cascade:
        listing = ", ".join(f"{len(u)} {d.cli}" for d, u in deps)
        raise Conflict(
            f"{type_name} {name} ({uuid}) still has {listing}; delete them first or pass cascade=true",
            code=f"{upper_snake(type_name)}.HAS_DEPENDENTS",
            field="uuid",
            dependents={d.name: u for d, u in deps},
        )
    for dep_rt, uuids in deps:
        for dep_uuid in uuids:
            await delete_via_api(call, dep_rt, dep_uuid)
    with call.tx() as s:
        row = s.get(rt.model, uuid)
        if row is None:  # a cascade removed it already
            return {}
        inv = rt.inventories(s, [row])[0]
        if cleanup is not None:
            cleanup(s, row)
        for dep_rt, column, ref in node.resources.dependents(type_name):
            if ref.on_delete == "detach":
                s.execute(
                    update(dep_rt.model)
                    .where(getattr(dep_rt.model, column) == uuid)
                    .values({column: None})
                )
        for table, column in node.resources.links_of(type_name):
            s.execute(sql_delete(table).where(getattr(table, column) == uuid))
        s.execute(sql_delete(TagVO).where(TagVO.resourceUuid == uuid))
        s.execute(sql_delete(AccountResourceRefVO).where(AccountResourceRefVO.resourceUuid == uuid))
        s.delete(row)
    await call.publish(f"/{rt.cli}/deleted", {"resourceType": type_name, "inventory": inv})
    return {}


async def delete_via_api(call: Call, rt: ResourceType, uuid: str) -> None:
    """Delete a dependent through its own service's ``Delete<Type>`` API."""
    api_name = f"Delete{rt.name}"
    if api_name not in call.node.apis.apis:
        raise Conflict(
            f"cannot cascade to {rt.name} {uuid}: no {api_name} API is loaded",
            code="RESOURCE.CASCADE_IMPOSSIBLE",
        )
    cls = call.node.apis.get(api_name)
    fields = {p.name for p in params_of(cls)}
    args: dict[str, Any] = {"uuid": uuid}
    if "cascade" in fields:
        args["cascade"] = True
    try:
        await call.call(cls(**args))
    except NotFound:
        pass  # removed meanwhile by another cascade branch
