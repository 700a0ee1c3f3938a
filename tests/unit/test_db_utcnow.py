"""zmn.core.db.utcnow: naive UTC, the value datetime.now(UTC) gives."""

from __future__ import annotations

import datetime as dt

from zmn.core.db import utcnow


def test_utcnow_is_naive_utc_between_two_aware_readings() -> None:
    slack = dt.timedelta(microseconds=1)  # a float time.time() may round the other way
    for _ in range(100):
        before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        now = utcnow()
        after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        assert now.tzinfo is None
        assert before - slack <= now <= after + slack
