"""vm_cloud_init: a VM's cloud-init user data and SSH keys

Revision ID: 0002_guest
Revises: 0002_ops
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# 64 KiB of user data is 87,384 characters of base64: more than MySQL's TEXT holds
_LONG_TEXT = (
    sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql").with_variant(mysql.MEDIUMTEXT(), "mariadb")
)

revision: str = "0002_guest"
down_revision: str | None = "0002_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a node started on an older schema by the test helpers (create_all) made it already
    if sa.inspect(op.get_bind()).has_table("vm_cloud_init"):
        return
    op.create_table(
        "vm_cloud_init",
        sa.Column("vmInstanceUuid", sa.String(length=32), nullable=False),
        sa.Column("instanceId", sa.String(length=64), nullable=False),
        sa.Column("userData", _LONG_TEXT, nullable=True),
        sa.Column("sshKeys", _LONG_TEXT, nullable=True),
        sa.PrimaryKeyConstraint("vmInstanceUuid", name=op.f("pk_vm_cloud_init")),
    )


def downgrade() -> None:
    op.drop_table("vm_cloud_init")
