"""The session cache: fast look-ups, refresh on use, expiry, and invalidation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from zmn.api.errors import PermissionDenied
from zmn.core.db import Database, utcnow
from zmn.core.globalconfig import GlobalConfigDef, GlobalConfigStore
from zmn.services.identity import sessions as sessions_mod
from zmn.services.identity.models import AccountVO, SessionVO, UserVO
from zmn.services.identity.sessions import SessionManager, digest


class StubNode:
    """What SessionManager uses of a node: the database, global config, db_write."""

    def __init__(self, db: Database, timeout: int) -> None:
        self.db = db
        self.global_config = GlobalConfigStore()
        self.global_config.declare(GlobalConfigDef("identity", "session.timeout", timeout, "int"))

    def db_write(self, statement: Any) -> None:
        with self.db.tx() as s:
            s.execute(statement)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'zmn.db'}")
    db.create_all()
    with db.tx() as s:
        s.add(
            AccountVO(uuid="a" * 32, name="alice", type="Normal", state="Enabled", passwordHash="!")
        )
    yield db
    db.dispose()


def _statements(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def _open(manager: SessionManager, db: Database, user: str | None = None) -> Any:
    """The new row (``uuid``: the digest the table keys it by) with the client's ``token``."""
    with db.tx() as s:
        row, token = manager.open(s, "a" * 32, user, 0)
    row.token = token
    return row


def test_principal_is_cached_between_calls(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    row = _open(manager, db)
    principal = manager.principal(row.token)
    assert (principal.accountUuid, principal.accountName, principal.accountType) == (
        "a" * 32,
        "alice",
        "Normal",
    )
    assert principal.sessionUuid == row.uuid and principal.userUuid is None
    assert row.uuid == digest(row.token) != row.token  # the table holds no usable token
    seen = _statements(db)
    for _ in range(100):
        assert manager.principal(row.token) is principal
    assert seen == []  # no database round trip on the hot path


def test_unknown_session_is_invalid(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied) as err:
        manager.principal("f" * 32)
    assert err.value.code == "IDENTITY.SESSION_INVALID"
    assert manager.validate("f" * 32) == {"valid": False, "code": "IDENTITY.SESSION_INVALID"}


def test_expired_session_says_expired_and_is_not_revived(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    row = _open(manager, db)
    with db.tx() as s:
        s.get(SessionVO, row.uuid).expiredDate = utcnow() - dt.timedelta(seconds=1)
    for _ in range(2):
        with pytest.raises(PermissionDenied) as err:
            manager.principal(row.token)
        assert err.value.code == "IDENTITY.SESSION_EXPIRED"


def test_cached_expiry_is_honoured_without_the_database(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    row = _open(manager, db)
    manager.principal(row.token)
    past = utcnow() - dt.timedelta(seconds=1)
    manager.cache[row.uuid].expires = past
    with db.tx() as s:
        s.get(SessionVO, row.uuid).expiredDate = past
    with pytest.raises(PermissionDenied) as err:
        manager.principal(row.token)
    assert err.value.code == "IDENTITY.SESSION_EXPIRED"


def test_use_refreshes_expiry_but_writes_rarely(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    row = _open(manager, db)
    manager.principal(row.token)
    entry = manager.cache[row.uuid]
    seen = _statements(db)
    manager.principal(row.token)
    assert entry.expires > row.expiredDate
    assert not any(s.startswith("UPDATE") for s in seen)  # moved by less than a minute
    entry.persisted -= dt.timedelta(seconds=61)  # as if the last write was a minute ago
    manager.principal(row.token)
    assert any(s.startswith("UPDATE session") for s in seen)
    with db.tx() as s:
        assert s.get(SessionVO, row.uuid).expiredDate == entry.expires


def test_cache_entries_are_rechecked_after_a_while(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    row = _open(manager, db)
    manager.principal(row.token)
    with db.tx() as s:  # another node logs the session out
        s.delete(s.get(SessionVO, row.uuid))
    manager.principal(row.token)  # still trusted from the cache
    monkeypatch.setattr(sessions_mod, "REVALIDATE", -1.0)
    with pytest.raises(PermissionDenied) as err:
        manager.principal(row.token)
    assert err.value.code == "IDENTITY.SESSION_INVALID"


def test_end_forgets_cached_sessions(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    row = _open(manager, db)
    manager.principal(row.token)
    with db.tx() as s:
        assert manager.end(s, SessionVO.accountUuid == "a" * 32) == [row.uuid]
    assert row.uuid not in manager.cache
    with pytest.raises(PermissionDenied):
        manager.principal(row.token)


def test_disabled_account_or_deleted_user_invalidates(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    with db.tx() as s:
        s.add(UserVO(uuid="c" * 32, name="bob", accountUuid="a" * 32, passwordHash="!"))
    user_session = _open(manager, db, user="c" * 32)
    assert manager.principal(user_session.token).userUuid == "c" * 32
    with db.tx() as s:
        s.delete(s.get(UserVO, "c" * 32))
    manager.forget([user_session.uuid])
    with pytest.raises(PermissionDenied):
        manager.principal(user_session.token)
    row = _open(manager, db)
    with db.tx() as s:
        s.get(AccountVO, "a" * 32).state = "Disabled"
    with pytest.raises(PermissionDenied) as err:
        manager.principal(row.token)
    assert err.value.code == "IDENTITY.SESSION_INVALID"


def test_max_concurrent(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    with db.tx() as s:
        manager.open(s, "a" * 32, None, 2)
        manager.open(s, "a" * 32, None, 2)
        with pytest.raises(PermissionDenied) as err:
            manager.open(s, "a" * 32, None, 2)
        assert err.value.code == "IDENTITY.TOO_MANY_SESSIONS"


def test_purge_keeps_recently_expired_sessions(db: Database) -> None:
    manager = SessionManager(StubNode(db, 7200))  # type: ignore[arg-type]
    old, recent = _open(manager, db), _open(manager, db)
    with db.tx() as s:
        s.get(SessionVO, old.uuid).expiredDate = utcnow() - dt.timedelta(hours=2)
        s.get(SessionVO, recent.uuid).expiredDate = utcnow() - dt.timedelta(minutes=1)
    assert manager.purge() == 1
    with db.tx() as s:
        assert s.get(SessionVO, old.uuid) is None
        assert s.get(SessionVO, recent.uuid) is not None
