"""Login lockout: after ``maxFailures`` wrong passwords in a row, refuse for a while.

The policy is pure arithmetic on a row's ``failedLogins`` and ``lockedUntil`` so that it is
tested without a node. Locking resets the count: once the lock ends, another
``maxFailures`` attempts are allowed, which bounds guessing to N per lockout period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


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
