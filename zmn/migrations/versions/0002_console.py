"""vm_nic.leaseDate: when the guest took its DHCP lease (as the host's agent saw it)

Revision ID: 0002_console
Revises: 0002_guest
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002_console"
down_revision: str | None = "0002_guest"  # re-chained after merging h/guest
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    with op.batch_alter_table("vm_nic", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leaseDate", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vm_nic", schema=None) as batch_op:
        batch_op.drop_column("leaseDate")
