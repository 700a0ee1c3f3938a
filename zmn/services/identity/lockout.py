"""Login lockout: after ``maxFailures`` wrong passwords in a row, refuse for a while.

The arithmetic on a row's ``failedLogins`` and ``lockedUntil`` (:class:`LockoutPolicy`) is
tested without a node. Locking resets the count: once the lock ends, another ``maxFailures``
attempts are allowed, which bounds guessing to N per lockout period.

Under concurrency the bound holds because an attempt is *reserved* before its password hash
is verified (:func:`reserve`): one conditional ``UPDATE`` counts the attempt only while the
login is not locked and fewer than ``maxFailures`` attempts are counted, so of any number of
simultaneous guesses (on any node, on SQLite, MariaDB or PostgreSQL: the database serialises
the row) at most ``maxFailures`` are checked; the others are refused unchecked. A right
password clears the count (:func:`clear`); a wrong one leaves its reservation counted, and
the one that finds the count full locks the login (:func:`lock_if_full`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, update


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int  # 0: never lock
    lockout_seconds: float

    def locked(self, locked_until: dt.datetime | None, now: dt.datetime) -> bool:
        return locked_until is not None and locked_until > now

    def after_failure(self, failed: int, now: dt.datetime) -> tuple[int, dt.datetime | None]:
        """The new (failedLogins, lockedUntil) after one more wrong password."""
        failed += 1
        if self.max_failures and failed >= self.max_failures:
            return 0, now + dt.timedelta(seconds=self.lockout_seconds)
        return failed, None


def reserve(conn: Any, model: Any, uuid: str, policy: LockoutPolicy, now: dt.datetime) -> bool:
    """Count one attempt on the login if it may be checked now; False when it is locked (or
    ``maxFailures`` attempts are being checked). Call before verifying the password."""
    count = func.coalesce(model.failedLogins, 0)
    unlocked = or_(model.lockedUntil.is_(None), model.lockedUntil <= now)
    clauses = [model.uuid == uuid, unlocked]
    if policy.max_failures:
        clauses.append(count < policy.max_failures)
    done = conn.execute(
        update(model).where(*clauses).values(failedLogins=count + 1, lockedUntil=None)
    )
    return int(done.rowcount) == 1


def lock_if_full(
    conn: Any, model: Any, uuid: str, policy: LockoutPolicy, now: dt.datetime
) -> dt.datetime | None:
    """After a wrong password: lock the login when its count is full; the lock's end, if set."""
    if not policy.max_failures:
        return None
    until = now + dt.timedelta(seconds=policy.lockout_seconds)
    done = conn.execute(
        update(model)
        .where(model.uuid == uuid, func.coalesce(model.failedLogins, 0) >= policy.max_failures)
        .values(failedLogins=0, lockedUntil=until)
    )
    return until if int(done.rowcount) == 1 else None


def clear(conn: Any, model: Any, uuid: str, **values: Any) -> None:
    """A right password: the count starts again (``values``: e.g. a rehashed password)."""
    conn.execute(
        update(model).where(model.uuid == uuid).values(failedLogins=0, lockedUntil=None, **values)
    )
