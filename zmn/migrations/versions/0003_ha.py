"""vm_ha_status: what VM HA did about a VM whose host died

Revision ID: 0003_ha
Revises: 0003_storage
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003_ha"
down_revision: str | None = "0003_storage"  # re-chained after merging h/storage
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "vm_ha_status",
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("deadHostUuid", sa.String(length=32), nullable=True),
        sa.Column("hostUuid", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lastError", sa.Text(), nullable=True),
        sa.Column("nextAttemptDate", TIMESTAMP, nullable=True),
        sa.Column("createDate", TIMESTAMP, nullable=False),
        sa.Column("lastOpDate", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_vm_ha_status")),
    )


def downgrade() -> None:
    op.drop_table("vm_ha_status")
