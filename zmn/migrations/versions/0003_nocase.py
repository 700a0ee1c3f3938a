"""an index on the lower-cased value of every indexed name column

Revision ID: 0003_nocase
Revises: 0002_stable
Create Date: 2026-12-06 08:00:00

Queries compare text ignoring case (zstack-cli's semantics); ``name=X`` and ``name~=prefix%``
then compare ``lower(name)``, which this revision indexes: an expression index on SQLite and
PostgreSQL (``text_pattern_ops``), an invisible virtual column ``name_folded`` with an index on
MariaDB/MySQL (see ``zmn/core/nocase.py``). Only indexes and a computed column are added:
nodes of the previous release keep working while it runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zmn.core.nocase import FOLDED_COLUMNS, drop_folded_ddl, folded_ddl

revision: str = "0003_nocase"
down_revision: str | None = "0002_stable"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _indexed_name_columns(conn: sa.engine.Connection) -> list[tuple[str, str]]:
    """(table, column) of every column of FOLDED_COLUMNS that has an index of its own."""
    insp = sa.inspect(conn)
    found: list[tuple[str, str]] = []
    for table in insp.get_table_names():
        with warnings.catch_warnings():  # SQLite's reflection skips expression indexes, ours
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            indexes = insp.get_indexes(table)
        single = {tuple(ix["column_names"]) for ix in indexes}
        found.extend((table, c) for c in FOLDED_COLUMNS if (c,) in single)
    return sorted(found)


def upgrade() -> None:
    conn = op.get_bind()
    for table, column in _indexed_name_columns(conn):
        for statement in folded_ddl(conn.dialect.name, table, column):
            conn.exec_driver_sql(statement)


def downgrade() -> None:
    conn = op.get_bind()
    for table, column in _indexed_name_columns(conn):
        for statement in drop_folded_ddl(conn.dialect.name, table, column):
            conn.exec_driver_sql(statement)
