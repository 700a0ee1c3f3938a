"""``ensure_admin``: what ``zmn init`` relies on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from zmn.core.db import Database
from zmn.core.models import AccountResourceRefVO
from zmn.services.identity import passwords
from zmn.services.identity.bootstrap import ensure_admin, ensure_admin_row
from zmn.services.identity.models import AccountVO


def _db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'zmn.db'}")
    db.create_all()
    return db


def _admin(db: Database) -> AccountVO:
    with db.tx() as s:
        row = s.scalar(select(AccountVO).where(AccountVO.name == "admin"))
        assert row is not None
        return row


def test_creates_admin_with_a_random_password(tmp_path: Path) -> None:
    db = _db(tmp_path)
    created, password = ensure_admin(db)
    assert created and password and len(password) >= 16
    row = _admin(db)
    assert row.type == "SystemAdmin" and row.state == "Enabled"
    assert passwords.verify_password(row.passwordHash, password)
    with db.tx() as s:
        ref = s.get(AccountResourceRefVO, row.uuid)
        assert ref is not None and ref.accountUuid == row.uuid
    db.dispose()


def test_never_resets_an_existing_admin(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _, first = ensure_admin(db, password="first-password")
    assert first == "first-password"
    assert ensure_admin(db) == (False, None)
    assert ensure_admin(db, password="other-password") == (False, None)
    assert passwords.verify_password(_admin(db).passwordHash, "first-password")
    db.dispose()


def test_a_placeholder_admin_gets_its_first_password(tmp_path: Path) -> None:
    db = _db(tmp_path)
    uuid = ensure_admin_row(db)  # what a node started without `zmn init` does
    assert _admin(db).passwordHash == passwords.UNUSABLE
    assert ensure_admin_row(db) == uuid
    created, password = ensure_admin(db, password="chosen-password")
    assert (created, password) == (True, "chosen-password")
    row = _admin(db)
    assert row.uuid == uuid
    assert passwords.verify_password(row.passwordHash, "chosen-password")
    with db.tx() as s:
        assert len(s.scalars(select(AccountVO)).all()) == 1
    db.dispose()
