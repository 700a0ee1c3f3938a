"""Password hashing at argon2's cheapest, for tests that create accounts and log in.

The product's parameters cost tens of milliseconds a hash (and a dummy hash per unknown
account); a test that makes accounts by the dozen takes them cheap. Nothing here is used by
the node itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from argon2 import PasswordHasher

from zmn.services.identity import passwords


@contextmanager
def cheap_password_hashes() -> Iterator[None]:
    """While the block runs: one pass over 1 MiB, one lane; no precomputed dummy hash."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "_hasher", PasswordHasher(1, 1024, 1))
        mp.setattr(passwords, "_dummy", [])
        yield
