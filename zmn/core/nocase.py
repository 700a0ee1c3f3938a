"""Case-insensitive text comparison that still uses indexes, on SQLite, MariaDB and PostgreSQL.

Queries compare strings the way zstack-cli's do on MySQL's ``_ci`` collations: ``name=Web``,
``name~=web%`` and ``name?=WEB,db`` match ``web``. Columns keep their binary collation (sorting,
keyset cursors and unique names stay by code point on every engine); a comparison folds both
sides with ``lower()`` instead, and every indexed ``name`` column has an index on its folded
form so that ``name=X`` and ``name~=prefix%`` do not scan:

* SQLite: ``CREATE INDEX ix_T_name_folded ON T (lower(name))``. SQLite's LIKE optimisation
  only takes a bare column, so a left-anchored pattern also gets the range its prefix implies
  (``lower(name) >= 'web' AND lower(name) < 'wec'``), which the index serves;
* PostgreSQL: the same expression index with ``text_pattern_ops``, which serves ``=`` and a
  left-anchored ``LIKE`` whatever the database's collation;
* MariaDB/MySQL (no expression indexes on MariaDB 10): an invisible virtual column
  ``name_folded`` computed as ``LOWER(name)``, indexed; the compiler names that column.

``lower()`` is each engine's: SQLite's folds ASCII letters only, PostgreSQL's and MariaDB's
fold other letters too (``É`` = ``é``). UUIDs (``uuid`` and ``...Uuid`` fields) and enum
values are compared exactly (an enum value is first matched to its declared spelling).

:func:`folded_ddl` is the one source of that DDL: ``create_all`` runs it for every new table
(:func:`create_folded_indexes`, hooked on ``Base.metadata`` in :mod:`zmn.core.db`) and the
migration ``0003_nocase`` runs it for the tables of an existing database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, String, Table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

FOLDED_COLUMNS = ("name",)  # indexed columns of these names also get a folded index
SUFFIX = "_folded"


def folded_index_name(table: str, column: str) -> str:
    return f"ix_{table}_{column}{SUFFIX}"


def folded_ddl(dialect: str, table: str, column: str) -> list[str]:
    """The statements giving ``table.column`` an index on its lower-cased value."""
    index = folded_index_name(table, column)
    if dialect in ("mysql", "mariadb"):
        return [
            f"ALTER TABLE `{table}` ADD COLUMN `{column}{SUFFIX}` VARCHAR(255)"
            f" AS (LOWER(`{column}`)) VIRTUAL INVISIBLE",
            f"CREATE INDEX `{index}` ON `{table}` (`{column}{SUFFIX}`)",
        ]
    ops = " text_pattern_ops" if dialect == "postgresql" else ""
    return [f'CREATE INDEX "{index}" ON "{table}" (lower("{column}"){ops})']


def drop_folded_ddl(dialect: str, table: str, column: str) -> list[str]:
    """Undo :func:`folded_ddl`."""
    index = folded_index_name(table, column)
    if dialect in ("mysql", "mariadb"):
        return [
            f"DROP INDEX `{index}` ON `{table}`",
            f"ALTER TABLE `{table}` DROP COLUMN `{column}{SUFFIX}`",
        ]
    return [f'DROP INDEX "{index}"']


def folded_columns(table: Table) -> list[str]:
    """The columns of a model table that have a folded index (indexed ``name`` columns)."""
    return [c.name for c in table.columns if c.name in FOLDED_COLUMNS and c.index]


def create_folded_indexes(target: Any, connection: Any, **kw: Any) -> None:
    """``after_create`` hook of ``Base.metadata``: folded indexes of the tables just made."""
    for table in kw.get("tables") or []:
        for column in folded_columns(table):
            for statement in folded_ddl(connection.dialect.name, table.name, column):
                connection.exec_driver_sql(statement)


# --------------------------------------------------------------------------- SQL expressions


class folded(FunctionElement[str]):
    """``lower(x)``; on MariaDB/MySQL, a column with a folded index names its virtual column."""

    type = String()
    inherit_cache = True
    name = "folded"


@compiles(folded)
def _lower(element: folded, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(folded, "mysql")
@compiles(folded, "mariadb")
def _virtual_column(element: folded, compiler: Any, **kw: Any) -> str:
    (arg,) = element.clauses.clauses
    if isinstance(arg, Column) and isinstance(arg.table, Table) and arg.name in FOLDED_COLUMNS:
        if arg.name in folded_columns(arg.table):
            quote = compiler.preparer.quote
            return f"{quote(arg.table.name)}.{quote(arg.name + SUFFIX)}"
    return f"LOWER({compiler.process(element.clauses, **kw)})"


class sqlite_prefix_range(FunctionElement[bool]):
    """``x >= lo AND x < hi`` on SQLite (where it lets an expression index serve a
    left-anchored LIKE); true elsewhere (their LIKE uses the index by itself, and a range on
    PostgreSQL would follow the database's collation, not code points)."""

    inherit_cache = True
    name = "sqlite_prefix_range"


@compiles(sqlite_prefix_range)
def _no_range(element: sqlite_prefix_range, compiler: Any, **kw: Any) -> str:
    return "1 = 1"


@compiles(sqlite_prefix_range, "sqlite")
def _range(element: sqlite_prefix_range, compiler: Any, **kw: Any) -> str:
    x, lo, hi = (compiler.process(c, **kw) for c in element.clauses.clauses)
    return f"({x} >= {lo} AND {x} < {hi})"


def ascii_lower(text: str) -> str:
    """SQLite's ``lower()``: ASCII letters only."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def prefix_bounds(pattern: str) -> tuple[str, str] | None:
    """[lo, hi) holding every SQLite-folded text that a LIKE ``pattern`` (case-sensitive, on
    folded text) can match, or None when the pattern does not start with a literal."""
    cut = min((i for i, ch in enumerate(pattern) if ch in "%_"), default=len(pattern))
    prefix = ascii_lower(pattern[:cut])
    while prefix and ord(prefix[-1]) == 0x10FFFF:
        prefix = prefix[:-1]  # no code point above it: the bound moves to the previous one
    if not prefix:
        return None
    last = ord(prefix[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:  # surrogates are no text: the next character is U+E000
        last = 0xE000
    return prefix, prefix[:-1] + chr(last)


def folded_like(col: Any, pattern: str, negate: bool, literal_of: Any) -> ColumnElement[bool]:
    """``col`` LIKE ``pattern`` ignoring case (NOT LIKE when ``negate``)."""
    lhs = folded(col)
    rhs = folded(literal_of(pattern))
    if negate:
        return lhs.not_like(rhs)  # type: ignore[no-any-return]
    bounds = prefix_bounds(pattern)
    if bounds is None:
        return lhs.like(rhs)  # type: ignore[no-any-return]
    lo, hi = bounds
    ranged: ColumnElement[bool] = lhs.like(rhs) & sqlite_prefix_range(
        lhs, literal_of(lo), literal_of(hi)
    )
    return ranged
