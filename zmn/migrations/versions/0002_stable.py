"""session rows keyed by the digest of their token

Revision ID: 0002_stable
Revises: 0001
Create Date: 2026-12-06 05:30:00

A session's row used to be keyed by its bearer token; it is now keyed by the token's
SHA-256 digest (``zmn.services.identity.sessions.digest``), so the table holds no usable
token. Open sessions survive: their keys are rewritten to the digest of the old key, which
is the token their clients hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_stable"
down_revision: str | None = "0002_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_session = sa.table("session", sa.column("uuid", sa.String(32)))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def upgrade() -> None:
    conn = op.get_bind()
    tokens = [str(t) for t in conn.execute(sa.select(_session.c.uuid)).scalars()]
    for token in tokens:
        conn.execute(
            sa.update(_session).where(_session.c.uuid == token).values(uuid=_digest(token))
        )


def downgrade() -> None:
    # a digest cannot be turned back into its token: the sessions end (clients log in again)
    op.get_bind().execute(sa.delete(_session))
