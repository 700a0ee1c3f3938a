"""kvm_host.deployDate: when the agent was last deployed on the host

Revision ID: 0002_ops
Revises: 0001

Online-safe: one nullable column, no rewrite of existing rows on any backend (SQLite and
PostgreSQL add it in the catalogue, MariaDB in place), so nodes of the previous release keep
running while it is applied.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002_ops"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.add_column("kvm_host", sa.Column("deployDate", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kvm_host") as batch_op:
        batch_op.drop_column("deployDate")
