"""Login lockout arithmetic and the self-service rule."""

from __future__ import annotations

import datetime as dt

from zmn.core.bus import Principal
from zmn.services.identity.lockout import LockoutPolicy
from zmn.services.identity.login import login_failed
from zmn.services.identity.service import may_manage

NOW = dt.datetime(2025, 1, 1, 12, 0, 0)


def test_failures_below_the_limit_only_count() -> None:
    policy = LockoutPolicy(max_failures=3, lockout_seconds=300)
    assert policy.after_failure(0, NOW) == (1, None)
    assert policy.after_failure(1, NOW) == (2, None)


def test_the_nth_failure_locks_and_resets_the_count() -> None:
    policy = LockoutPolicy(max_failures=3, lockout_seconds=300)
    failed, until = policy.after_failure(2, NOW)
    assert failed == 0
    assert until == NOW + dt.timedelta(seconds=300)
    assert policy.locked(until, NOW)
    assert policy.locked(until, NOW + dt.timedelta(seconds=299))
    assert not policy.locked(until, NOW + dt.timedelta(seconds=300))  # the lock has ended


def test_zero_max_failures_never_locks() -> None:
    policy = LockoutPolicy(max_failures=0, lockout_seconds=300)
    failed = 0
    for _ in range(100):
        failed, until = policy.after_failure(failed, NOW)
        assert until is None
    assert failed == 100


def test_no_lock_means_not_locked() -> None:
    assert not LockoutPolicy(3, 300).locked(None, NOW)


def test_login_failed_does_not_say_why() -> None:
    err = login_failed()
    assert err.kind == "PermissionDenied"
    assert err.code == "IDENTITY.LOGIN_FAILED"
    assert err.details == {}


def test_may_manage() -> None:
    admin = Principal("a" * 32, "admin", "SystemAdmin")
    alice = Principal("b" * 32, "alice", "Normal")
    alice_user = Principal("b" * 32, "alice", "Normal", userUuid="c" * 32)
    assert may_manage(admin, "b" * 32)
    assert may_manage(alice, "b" * 32)
    assert not may_manage(alice, "d" * 32)
    assert not may_manage(alice_user, "b" * 32)  # a user acts as its account, but does not own it
