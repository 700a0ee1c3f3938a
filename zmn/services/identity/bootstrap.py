"""The ``admin`` account every installation has.

``zmn init`` calls :func:`ensure_admin` to create it with a random (or given) password and
print that password once. The identity service calls :func:`ensure_admin_row` at start so
that a node started without ``zmn init`` (tests, embedded use) still has an admin; that row
gets an unusable password, which ``ensure_admin`` may later replace. An admin that has a
real password is never reset by either.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from sqlalchemy import select

from zmn.core.db import new_uuid
from zmn.core.models import AccountResourceRefVO
from zmn.services.identity.models import AccountVO
from zmn.services.identity.passwords import UNUSABLE, hash_password

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.db import Database

ADMIN_NAME = "admin"


def _admin(s: Session) -> AccountVO | None:
    return s.scalar(select(AccountVO).where(AccountVO.name == ADMIN_NAME))


def _add_admin(s: Session, password_hash: str) -> AccountVO:
    row = AccountVO(
        uuid=new_uuid(),
        name=ADMIN_NAME,
        description="the built-in administrator",
        type="SystemAdmin",
        state="Enabled",
        passwordHash=password_hash,
        failedLogins=0,
    )
    s.add(row)
    # Every account owns its own row, so a normal account's QueryAccount shows itself.
    s.add(AccountResourceRefVO(resourceUuid=row.uuid, resourceType="Account", accountUuid=row.uuid))
    return row


def ensure_admin(db: Database, password: str | None = None) -> tuple[bool, str | None]:
    """Make sure ``admin`` exists with a usable password.

    Returns ``(True, password)`` when the admin was created (or had only the unusable
    placeholder password) and now has ``password`` (random unless given), else
    ``(False, None)``: an admin with a real password is left alone.
    """
    with db.tx() as s:
        row = _admin(s)
        if row is not None and row.passwordHash != UNUSABLE:
            return False, None
    chosen = password or secrets.token_urlsafe(18)
    hashed = hash_password(chosen)  # outside the transaction: hashing takes a while
    with db.tx() as s:
        row = _admin(s)
        if row is None:
            _add_admin(s, hashed)
        elif row.passwordHash == UNUSABLE:
            row.passwordHash = hashed
        else:  # another process set it meanwhile
            return False, None
    return True, chosen


def ensure_admin_row(db: Database) -> str:
    """The admin account's UUID, creating it with an unusable password when missing."""
    with db.tx() as s:
        row = _admin(s) or _add_admin(s, UNUSABLE)
        return row.uuid
