"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from zmn.api.errors import InvalidArgument
from zmn.services.identity import passwords


def test_hash_is_argon2id_and_salted() -> None:
    first = passwords.hash_password("correct horse")
    second = passwords.hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second  # a fresh salt every time
    assert "correct horse" not in first


def test_verify_accepts_only_the_right_password() -> None:
    stored = passwords.hash_password("correct horse")
    assert passwords.verify_password(stored, "correct horse")
    assert not passwords.verify_password(stored, "Correct horse")
    assert not passwords.verify_password(stored, "")


def test_unusable_and_malformed_hashes_never_verify() -> None:
    assert not passwords.verify_password(passwords.UNUSABLE, "")
    assert not passwords.verify_password(passwords.UNUSABLE, passwords.UNUSABLE)
    assert not passwords.verify_password("$argon2id$garbage", "x")
    assert not passwords.needs_rehash(passwords.UNUSABLE)


def test_weaker_hashes_are_marked_for_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert passwords.verify_password(weak, "pw")  # parameters travel in the hash
    assert passwords.needs_rehash(weak)
    assert not passwords.needs_rehash(passwords.hash_password("pw"))


def test_dummy_hash_is_stable_and_matches_nothing_guessable() -> None:
    dummy = passwords.dummy_hash()
    assert dummy == passwords.dummy_hash()
    assert dummy.startswith("$argon2id$")
    assert not passwords.verify_password(dummy, "")


async def test_async_helpers_run_off_the_loop() -> None:
    stored = await passwords.hash_async("s3cret-pass")
    assert await passwords.verify_async(stored, "s3cret-pass")
    assert not await passwords.verify_async(stored, "wrong")


def test_policy_refuses_short_passwords() -> None:
    passwords.check_policy("12345678", 8)
    with pytest.raises(InvalidArgument) as err:
        passwords.check_policy("1234567", 8)
    assert err.value.code == "IDENTITY.WEAK_PASSWORD"
    assert err.value.field == "password"
