"""Password hashing with argon2id (argon2-cffi's default), kept off the event loop.

A hash string records its own cost parameters, so raising the cost later only needs
:func:`needs_rehash` at the next successful login. Verifying costs tens of milliseconds on
purpose; the async helpers run it in a worker thread so other API calls keep flowing.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from zmn.api.errors import InvalidArgument

# Not an argon2 hash, so no password verifies against it: an account with it cannot log in
# until someone sets a password (``zmn init`` or UpdateAccount over the unix socket).
UNUSABLE = "!unusable"

_hasher = PasswordHasher()
_dummy: list[str] = []


def hash_password(password: str) -> str:
    return str(_hasher.hash(password))


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored``; a malformed or unusable hash never matches."""
    try:
        return bool(_hasher.verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    try:
        return bool(_hasher.check_needs_rehash(stored))
    except (InvalidHashError, ValueError):
        return False


def dummy_hash() -> str:
    """A real hash of a random secret: unknown accounts cost as much time as known ones."""
    if not _dummy:
        _dummy.append(hash_password(secrets.token_hex(16)))
    return _dummy[0]


async def hash_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_async(stored: str, password: str) -> bool:
    return await asyncio.to_thread(verify_password, stored, password)


def check_policy(password: str, min_length: int, field: str = "password") -> None:
    """Refuse passwords shorter than ``identity/password.minLength``."""
    if len(password) < min_length:
        raise InvalidArgument(
            f"{field} must have at least {min_length} characters"
            " (global config identity/password.minLength)",
            code="IDENTITY.WEAK_PASSWORD",
            field=field,
        )
