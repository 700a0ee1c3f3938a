"""host index for the allocator's first fit: (zoneUuid, name, uuid)

Revision ID: 0003_perfscale
Revises: 0003_ha
Create Date: 2026-12-06 07:50:00

The host allocator reads the first hosts with room of the zone in name order and stops
(``zmn.services.host.allocator._first_fit``); with this index SQLite walks the zone's hosts in
that order instead of reading every host of the zone and sorting them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_perfscale"
down_revision: str | None = "0003_ha"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_host_zone_name", "host", ["zoneUuid", "name", "uuid"])


def downgrade() -> None:
    op.drop_index("ix_host_zone_name", table_name="host")
