"""shared primary storage (SharedMountPoint, NFS): the marker identity and each host's view

Revision ID: 0003_storage
Revises: 0002_stable
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003_storage"
down_revision: str | None = "0002_stable"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "shared_storage_marker",
        sa.Column("primaryStorageUuid", sa.String(32), primary_key=True),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("written", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "shared_storage_host_ref",
        sa.Column("primaryStorageUuid", sa.String(32), primary_key=True),
        sa.Column("hostUuid", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("lastOpDate", TIMESTAMP, nullable=False),
    )
    op.create_index(
        "ix_shared_storage_host_ref_hostUuid", "shared_storage_host_ref", ["hostUuid"]
    )


def downgrade() -> None:
    op.drop_index("ix_shared_storage_host_ref_hostUuid", table_name="shared_storage_host_ref")
    op.drop_table("shared_storage_host_ref")
    op.drop_table("shared_storage_marker")
