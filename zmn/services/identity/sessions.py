"""Session look-up for every API call: an in-memory cache in front of the session table.

Every authenticated call asks :meth:`SessionManager.principal`; it must be cheap. A cached
entry is trusted for :data:`REVALIDATE` seconds, then re-read (another node may have ended
the session). Use refreshes the expiry (``identity/session.timeout`` seconds from now); the
new expiry reaches the database only when it moved by more than a tenth of the timeout (at
most a minute), so a busy session costs one write a minute, not one per call.

Expired sessions stay in the table for :data:`GRACE` so that a client is told "expired"
rather than "invalid"; :meth:`purge` removes them later.

The table never holds a usable token: a session's row is keyed by :func:`digest` of the
token (SHA-256), which only the client keeps (the login's reply is the one time it is
sent). Whoever reads the table, a backup or ``QuerySession`` learns no bearer secret. The
principal of a call carries the digest (``sessionUuid``), which is the row's UUID.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from zmn.api.errors import PermissionDenied
from zmn.core.bus import Principal
from zmn.core.db import utcnow
from zmn.services.identity.models import AccountVO, SessionVO, UserVO

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

REVALIDATE = 10.0  # seconds a cached session is trusted without reading the table
MAX_CACHED = 10_000
GRACE = dt.timedelta(hours=1)


def digest(token: str) -> str:
    """The row key of the session whose bearer token is ``token``."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass
class CachedSession:
    principal: Principal
    expires: dt.datetime  # as this node knows it (refreshed on every use)
    persisted: dt.datetime  # as the table has it
    checked: float  # time.monotonic() of the last read of the table


def session_invalid(uuid: str) -> PermissionDenied:
    return PermissionDenied(
        "the session is not valid (logged out, or its account was disabled or deleted);"
        " log in again",
        code="IDENTITY.SESSION_INVALID",
        sessionUuid=uuid,
    )


def session_expired(uuid: str) -> PermissionDenied:
    return PermissionDenied(
        "the session has expired; log in again",
        code="IDENTITY.SESSION_EXPIRED",
        sessionUuid=uuid,
    )


class SessionManager:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.cache: dict[str, CachedSession] = {}

    def timeout(self) -> int:
        return int(self.node.global_config.get("identity", "session.timeout"))

    # ----------------------------------------------------------------- look-up

    def principal(self, token: str) -> Principal:
        """Who the session acts for; refreshes its expiry. Raises PermissionDenied."""
        now = utcnow()
        key = self.key(token)
        entry = self.entry(key, now)
        self._touch(key, entry, now)
        return entry.principal

    @staticmethod
    def key(token: str) -> str:
        if not isinstance(token, str) or not 0 < len(token) <= 64:
            raise session_invalid("")
        return digest(token)

    def entry(self, uuid: str, now: dt.datetime) -> CachedSession:
        """The session whose row key (digest) is ``uuid``."""
        entry = self.cache.get(uuid)
        if entry is None or entry.expires <= now or time.monotonic() - entry.checked > REVALIDATE:
            entry = self._load(uuid, now, entry)
        return entry

    def _load(self, uuid: str, now: dt.datetime, previous: CachedSession | None) -> CachedSession:
        self.cache.pop(uuid, None)
        with self.node.db.tx() as s:
            row = s.get(SessionVO, uuid)
            if row is None:
                raise session_invalid(uuid)
            account = s.get(AccountVO, row.accountUuid)
            user = s.get(UserVO, row.userUuid) if row.userUuid else None
            if account is None or account.state != "Enabled" or (row.userUuid and user is None):
                raise session_invalid(uuid)
            # Uses this node saw but did not write yet count too.
            expires = max(row.expiredDate, previous.expires) if previous else row.expiredDate
            if expires <= now:
                raise session_expired(uuid)
            principal = Principal(account.uuid, account.name, account.type, row.userUuid, row.uuid)
            entry = CachedSession(principal, expires, row.expiredDate, time.monotonic())
        if len(self.cache) >= MAX_CACHED:
            self.cache.pop(next(iter(self.cache)))
        self.cache[uuid] = entry
        return entry

    def _touch(self, uuid: str, entry: CachedSession, now: dt.datetime) -> None:
        timeout = self.timeout()
        new = now + dt.timedelta(seconds=timeout)
        entry.expires = new
        slack = min(60.0, timeout / 10)
        if abs((new - entry.persisted).total_seconds()) >= slack:
            self.node.db_write(
                update(SessionVO)
                .where(SessionVO.uuid == uuid)
                .values(expiredDate=new, lastOpDate=now)
            )
            entry.persisted = new

    def validate(self, token: str) -> dict[str, Any]:
        try:
            entry = self.entry(self.key(token), utcnow())
        except PermissionDenied as exc:
            return {"valid": False, "code": exc.code}
        return {
            "valid": True,
            "accountUuid": entry.principal.accountUuid,
            "userUuid": entry.principal.userUuid,
            "expiredDate": entry.expires.isoformat(timespec="milliseconds"),
        }

    # ----------------------------------------------------------------- life cycle

    def open(
        self, s: Session, account_uuid: str, user_uuid: str | None, max_concurrent: int
    ) -> tuple[SessionVO, str]:
        """A new session row in the caller's transaction, within ``maxConcurrent``; with the
        token, which is not stored."""
        now = utcnow()
        if max_concurrent:
            live = s.scalar(
                select(func.count())
                .select_from(SessionVO)
                .where(
                    SessionVO.accountUuid == account_uuid,
                    SessionVO.userUuid.is_(None)
                    if user_uuid is None
                    else SessionVO.userUuid == user_uuid,
                    SessionVO.expiredDate > now,
                )
            )
            if (live or 0) >= max_concurrent:
                raise PermissionDenied(
                    f"already {live} open sessions, the most allowed"
                    " (global config identity/session.maxConcurrent); log out of one first",
                    code="IDENTITY.TOO_MANY_SESSIONS",
                )
        token = secrets.token_hex(16)  # 32 hex digits, all random (not a time-ordered UUID)
        row = SessionVO(
            uuid=digest(token),
            accountUuid=account_uuid,
            userUuid=user_uuid,
            expiredDate=now + dt.timedelta(seconds=self.timeout()),
            createDate=now,
            lastOpDate=now,
        )
        s.add(row)
        return row, token

    def forget(self, uuids: Iterable[str]) -> None:
        for uuid in uuids:
            self.cache.pop(uuid, None)

    def end(self, s: Session, *clauses: Any) -> list[str]:
        """Delete the sessions matching ``clauses`` (in the caller's transaction); their UUIDs."""
        uuids = list(s.scalars(select(SessionVO.uuid).where(*clauses)))
        if uuids:
            s.execute(delete(SessionVO).where(SessionVO.uuid.in_(uuids)))
        self.forget(uuids)
        return uuids

    def purge(self) -> int:
        """Delete sessions that expired more than :data:`GRACE` ago."""
        with self.node.db.tx() as s:
            return len(self.end(s, SessionVO.expiredDate < utcnow() - GRACE))
