"""A small test schema for the query compiler and the core machinery, and a reference evaluator.

Four resource types chained by references, ``Qa -> Qb -> Qc -> Qd`` (``qbUuid``, ``qcUuid``,
``qdUuid``, all nullable; ``Qa.qbUuid`` is declared guaranteed: never dangling), plus a
many-to-many link ``Qb <-> Qd``. Every type has an int
(nullable) ``num``, a nullable string ``label``, a bool ``flag`` and an enum ``kind``. The
joins the registry derives are::

    Qa: qb                      Qb: qc, qa, qd (link)
    Qc: qd, qb                  Qd: qc, qb (link)

The tables live on their own declarative base so that they never appear in the product's
``Base.metadata`` (migration checks compare against it).

:class:`PyEvaluator` is an independent, pure-Python reading of the semantics the compiler
documents (zmn/core/query.py): existential joins, SQL null semantics, LIKE with ``%``/``_``
(no wildcard = substring), tag negation = no tag satisfies the positive, and text compared
ignoring case as zstack-cli's (zmn/core/nocase.py): ``=``, ``!=``, ``?=``, ``!?=``, ``~=``,
``!~=`` on strings fold both sides with SQLite's ``lower()`` (ASCII letters only: the model
runs on SQLite), enum values are first matched to their declared spelling, ``<``/``>`` and
sorting stay by code point.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Integer, String, delete
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from zmn.api.querylang import Condition
from zmn.core.config import BootConfig
from zmn.core.db import Base, new_uuid
from zmn.core.models import TagVO
from zmn.core.node import Node
from zmn.core.resource import LinkSpec, RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Service

KINDS = ["red", "green", "blue"]
TYPES = ["Qa", "Qb", "Qc", "Qd"]


class QBase(DeclarativeBase):
    """Declarative base of the test tables only."""


class _Common:
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    num: Mapped[int | None] = mapped_column(Integer, default=None)
    label: Mapped[str | None] = mapped_column(String(255), default=None)
    flag: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[str] = mapped_column(String(16), default="red")


class QdVO(_Common, QBase):
    __tablename__ = "qtest_d"


class QcVO(_Common, QBase):
    __tablename__ = "qtest_c"
    qdUuid: Mapped[str | None] = mapped_column(String(32), default=None)


class QbVO(_Common, QBase):
    __tablename__ = "qtest_b"
    qcUuid: Mapped[str | None] = mapped_column(String(32), default=None)


class QaVO(_Common, QBase):
    __tablename__ = "qtest_a"
    qbUuid: Mapped[str | None] = mapped_column(String(32), default=None)


class QbQdRefVO(QBase):
    __tablename__ = "qtest_b_d"
    qbUuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    qdUuid: Mapped[str] = mapped_column(String(32), primary_key=True)


MODELS: dict[str, Any] = {"Qa": QaVO, "Qb": QbVO, "Qc": QcVO, "Qd": QdVO}
REF_COLUMN = {"Qa": "qbUuid", "Qb": "qcUuid", "Qc": "qdUuid"}  # type -> its ref column
REF_TARGET = {"Qa": "Qb", "Qb": "Qc", "Qc": "Qd"}
# Types whose reference is declared guaranteed (null or an existing row, never dangling): the
# compiler may count ``Qb qa.*`` conditions on the Qa table; data sets must keep the promise.
GUARANTEED = {"Qa"}
FIELD_TYPES = {
    "uuid": "string",
    "name": "string",
    "num": "int",
    "label": "string",
    "flag": "bool",
    "kind": "string",
}


class QueryModelService(Service):
    """Declares the four test types; owns no APIs (Query<Type> come from the query service)."""

    name = "querymodel"

    def declare(self, registry: ResourceRegistry) -> None:
        for type_name, model in MODELS.items():
            refs = {}
            if type_name in REF_COLUMN:
                refs[REF_COLUMN[type_name]] = RefSpec(
                    REF_TARGET[type_name],
                    on_delete="detach",
                    guaranteed=type_name in GUARANTEED,
                )
            registry.add(
                ResourceType(
                    type_name,
                    model,
                    self.name,
                    type_name.lower(),
                    refs=refs,
                    enums={"kind": KINDS},
                )
            )
        registry.add_link(LinkSpec(QbQdRefVO, "Qb", "qbUuid", "Qd", "qdUuid"))


def build_node(
    home: Path,
    services: list[type[Service]],
    *,
    conf: dict[str, str] | None = None,
    memory: bool = False,
) -> Node:
    """A node (not started) with the given services loaded and every table created."""
    home.mkdir(parents=True, exist_ok=True)
    if conf:
        (home / "zmn.conf").write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
    env = {"ZMN_DB_URL": "sqlite://"} if memory else {}
    node = Node(BootConfig.load(home, env=env))
    node.load_services(services)
    Base.metadata.create_all(node.db.engine)
    QBase.metadata.create_all(node.db.engine)
    return node


# --------------------------------------------------------------------------- data sets


@dataclass
class Row:
    uuid: str
    name: str
    num: int | None
    label: str | None
    flag: bool
    kind: str
    ref: str | None = None  # qbUuid / qcUuid / qdUuid, or None for Qd

    def get(self, name: str) -> Any:
        return getattr(self, name)


@dataclass
class DataSet:
    rows: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in TYPES})
    links: set[tuple[str, str]] = field(default_factory=set)  # (qbUuid, qdUuid)
    tags: list[tuple[str, str, str, str]] = field(default_factory=list)  # (type, uuid, kind, tag)

    def by_uuid(self, type_name: str) -> dict[str, Row]:
        return {r.uuid: r for r in self.rows[type_name]}


def load(session: Session, data: DataSet) -> None:
    """Replace the contents of the test tables (and the tag table) with ``data``."""
    for model in (*MODELS.values(), QbQdRefVO, TagVO):
        session.execute(delete(model))
    for type_name, rows in data.rows.items():
        model = MODELS[type_name]
        for r in rows:
            values = {
                "uuid": r.uuid,
                "name": r.name,
                "num": r.num,
                "label": r.label,
                "flag": r.flag,
                "kind": r.kind,
            }
            if type_name in REF_COLUMN:
                values[REF_COLUMN[type_name]] = r.ref
            session.add(model(**values))
    for qb, qd in sorted(data.links):
        session.add(QbQdRefVO(qbUuid=qb, qdUuid=qd))
    for type_name, uuid, kind, tag in data.tags:
        session.add(
            TagVO(uuid=new_uuid(), resourceUuid=uuid, resourceType=type_name, type=kind, tag=tag)
        )


# --------------------------------------------------------------------------- evaluator

# type -> join name -> target type (the joins the registry derives for the test schema)
JOINS: dict[str, dict[str, str]] = {
    "Qa": {"qb": "Qb"},
    "Qb": {"qc": "Qc", "qa": "Qa", "qd": "Qd"},
    "Qc": {"qd": "Qd", "qb": "Qb"},
    "Qd": {"qc": "Qc", "qb": "Qb"},
}


def like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE as a regex: ``%`` any run, ``_`` one character, everything else literal."""
    out = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(out, re.S)


ENUMS = {"kind": KINDS}
FOLDING_OPS = ("=", "!=", "?=", "!?=")


def fold(text: str) -> str:
    """SQLite's ``lower()``: A-Z only (PostgreSQL's and MariaDB's also fold other letters)."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _convert(ftype: str, text: str, enum: list[str] | None = None) -> Any:
    if ftype == "int":
        return int(text)
    if ftype == "bool":
        return text.lower() == "true"
    if enum and text not in enum:
        same = [e for e in enum if e.lower() == text.lower()]
        return same[0] if len(same) == 1 else text
    return text


def _like_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def compare(
    value: Any, ftype: str, op: str, text: str | None, enum: list[str] | None = None
) -> bool:
    """One comparison with SQL null semantics: null satisfies only ``=null``."""
    if op == "=null":
        return value is None
    if op == "!=null":
        return value is not None
    if value is None:
        return False
    text = text or ""
    folding = ftype == "string" and not enum and op in FOLDING_OPS
    if folding:
        value = fold(value)
    if op in ("?=", "!?="):
        items = [_convert(ftype, v.strip(), enum) for v in text.split(",") if v.strip()]
        if folding:
            items = [fold(v) for v in items]
        return (value in items) if op == "?=" else (value not in items)
    if op in ("~=", "!~="):
        pattern = text if ("%" in text or "_" in text) else f"%{text}%"
        hit = like_regex(fold(pattern)).fullmatch(fold(_like_text(value))) is not None
        return hit if op == "~=" else not hit
    v = _convert(ftype, text, enum)
    if folding:
        v = fold(v)
    if op == "=":
        return bool(value == v)
    if op == "!=":
        return bool(value != v)
    if op == ">":
        return bool(value > v)
    if op == "<":
        return bool(value < v)
    if op == ">=":
        return bool(value >= v)
    if op == "<=":
        return bool(value <= v)
    raise AssertionError(op)


NEGATIVE = {"!=": "=", "!?=": "?=", "!~=": "~="}


class PyEvaluator:
    """Which rows of a data set satisfy conditions, computed without SQL."""

    def __init__(self, data: DataSet) -> None:
        self.data = data
        self.index = {t: data.by_uuid(t) for t in TYPES}

    def targets(self, type_name: str, row: Row, join: str) -> list[Row]:
        target = JOINS[type_name][join]
        if type_name == "Qb" and join == "qd":
            return [self.index["Qd"][d] for b, d in self.data.links if b == row.uuid]
        if type_name == "Qd" and join == "qb":
            return [self.index["Qb"][b] for b, d in self.data.links if d == row.uuid]
        if REF_TARGET.get(type_name) == target:  # forward
            return [self.index[target][row.ref]] if row.ref in self.index[target] else []
        # reverse: rows of the target type whose reference points at this row
        return [r for r in self.data.rows[target] if r.ref == row.uuid]

    def tags_of(self, type_name: str, row: Row, kind: str) -> list[str]:
        return [
            t for ty, u, k, t in self.data.tags if ty == type_name and u == row.uuid and k == kind
        ]

    def holds(self, type_name: str, row: Row, path: list[str], cond: Condition) -> bool:
        head = path[0]
        if len(path) > 1:
            return any(
                self.holds(JOINS[type_name][head], t, path[1:], cond)
                for t in self.targets(type_name, row, head)
            )
        if head in ("__userTag__", "__systemTag__"):
            tags = self.tags_of(type_name, row, "User" if head == "__userTag__" else "System")
            if cond.op == "=null":
                return not tags
            if cond.op == "!=null":
                return bool(tags)
            positive = NEGATIVE.get(cond.op)
            if positive:
                return not any(compare(t, "string", positive, cond.value) for t in tags)
            return any(compare(t, "string", cond.op, cond.value) for t in tags)
        return compare(row.get(head), FIELD_TYPES[head], cond.op, cond.value, ENUMS.get(head))

    def select(self, type_name: str, conds: Iterable[Condition]) -> list[Row]:
        conds = list(conds)
        return [
            r
            for r in self.data.rows[type_name]
            if all(self.holds(type_name, r, c.path, c) for c in conds)
        ]


def sort_rows(rows: list[Row], key: str | None, direction: str) -> list[Row]:
    """ORDER BY key [asc|desc], uuid asc, with SQLite's nulls-first ordering for asc."""
    by_uuid = sorted(rows, key=lambda r: r.uuid)
    if key is None:
        return by_uuid
    nulls = [r for r in by_uuid if r.get(key) is None]
    values = sorted(
        (r for r in by_uuid if r.get(key) is not None),
        key=lambda r: r.get(key),
        reverse=direction == "desc",
    )
    if direction == "desc":
        # sorted(reverse=True) keeps ties in original (uuid) order: stable sort
        return values + nulls
    return nulls + values
