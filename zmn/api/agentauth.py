"""Request signing between the management node and host agents (``zagent``).

Both directions use it: the node signs the commands it sends to an agent, the agent signs the
task results and lifecycle reports it pushes to the node. The key is a per-host secret created
when the host is deployed; nothing else is shared.

A signed request carries three headers::

    X-Zagent-Timestamp  unix seconds (integer) when it was signed
    X-Zagent-Nonce      16-64 characters [A-Za-z0-9_-], fresh for every request
    X-Zagent-Signature  hex HMAC-SHA256 of the string to sign

and the string to sign is, joined by newlines::

    ZAGENT-HMAC-SHA256
    METHOD              upper case
    PATH                the request target as sent, query string included
    TIMESTAMP
    NONCE
    hex SHA-256 of the body (the empty body for GET)

:func:`verify` refuses, with :class:`AuthError` (a ``PermissionDenied``), a request whose
headers are missing or malformed (``AGENT.AUTH_MISSING``), whose signature does not match
(``AGENT.AUTH_FORGED``), whose timestamp is further than the skew window from the receiver's
clock (``AGENT.AUTH_STALE``) or whose nonce was already seen inside the window
(``AGENT.AUTH_REPLAYED``). A nonce is remembered only after its signature checked out, so
only a holder of the secret can fill the cache, and only until its timestamp leaves the window
(after that the request is stale anyway).

Contract code: standard library only, imported by the node and by the agent.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from zmn.api.errors import PermissionDenied

SCHEME = "ZAGENT-HMAC-SHA256"
HEADER_TIMESTAMP = "X-Zagent-Timestamp"
HEADER_NONCE = "X-Zagent-Nonce"
HEADER_SIGNATURE = "X-Zagent-Signature"
HEADER_CONTENT = "X-Zagent-Content-Sha256"
DEFAULT_SKEW = 300
# a body up to this size may be read before its signature is checked; a larger one only
# after the signature over its declared hash (HEADER_CONTENT) checked out
PREAUTH_BODY = 64 * 1024
MIN_SECRET_BYTES = 16

_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")


class AuthError(PermissionDenied):
    """A request that is not provably from the holder of the host secret, or not fresh."""

    default_code = "AGENT.AUTH_FORGED"


class _Headers(Protocol):
    def items(self) -> Iterable[tuple[str, str]]: ...


def new_secret() -> str:
    """A fresh per-host secret: 32 random bytes as hex, made at deployment."""
    return secrets.token_hex(32)


def _key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"agent secret must have at least {MIN_SECRET_BYTES} bytes")
    return key


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The exact bytes the HMAC covers (exposed so that tests and other clients agree)."""
    parts = (SCHEME, method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest())
    return "\n".join(parts).encode()


def signature(
    secret: bytes | str, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    msg = string_to_sign(method, path, timestamp, nonce, body)
    return hmac.new(_key(secret), msg, hashlib.sha256).hexdigest()


def sign(
    secret: bytes | str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request; ``timestamp``/``nonce`` only for tests."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    n = nonce if nonce is not None else secrets.token_urlsafe(24)
    return {
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: n,
        HEADER_SIGNATURE: signature(secret, method, path, ts, n, body),
        HEADER_CONTENT: hashlib.sha256(body).hexdigest(),
    }


class NonceCache:
    """Nonces seen inside the skew window; thread-safe, bounded.

    When full (only reachable with the secret), the oldest entries are dropped first; a
    dropped nonce belongs to a request that is close to going stale anyway.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._adds = 0

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, nonce: str, expires_at: float, now: float) -> bool:
        """Remember ``nonce`` until ``expires_at``; False when it is already remembered."""
        with self._lock:
            seen = self._expiry.get(nonce)
            if seen is not None and seen >= now:
                return False
            self._adds += 1
            if len(self._expiry) >= self._max or self._adds % 1024 == 0:
                self._purge(now)
            self._expiry[nonce] = expires_at
            self._remembered(nonce, expires_at, now)
            return True

    def _remembered(self, nonce: str, expires_at: float, now: float) -> None:
        """Called under the lock after ``nonce`` was added (a hook for persistence)."""

    def _purge(self, now: float) -> None:
        for key in [k for k, exp in self._expiry.items() if exp < now]:
            del self._expiry[key]
        overflow = len(self._expiry) - self._max + 1
        if overflow > 0:
            for key in sorted(self._expiry, key=self._expiry.__getitem__)[:overflow]:
                del self._expiry[key]


class PersistentNonceCache(NonceCache):
    """A :class:`NonceCache` that outlives its process and a crash of its machine: a request
    captured and replayed after a restart, inside its timestamp's window, is still refused.

    Each remembered nonce is appended to ``path`` (``EXPIRES NONCE`` lines) and is on disk
    (``fdatasync``) before :meth:`add` returns, so before the request it admitted is acted
    on: a power loss cannot forget a nonce whose request ran. Concurrent adds share one sync
    (group commit: a thread whose line a sync already covered does not sync again), taken
    outside the cache's lock. A start reads back the lines that have not expired, and the
    file is rewritten with only the live entries (written, synced, renamed, the directory
    synced) once it holds more than twice as many lines as there are entries (and at least
    1,024).
    """

    def __init__(self, path: str, max_entries: int = 100_000, *, now: float | None = None) -> None:
        super().__init__(max_entries)
        self.path = path
        clock = time.time() if now is None else now
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                for line in f:
                    expires, _, nonce = line.strip().partition(" ")
                    try:
                        if float(expires) >= clock and _NONCE_RE.fullmatch(nonce):
                            self._expiry[nonce] = float(expires)
                    except ValueError:
                        continue  # a torn last line
        except FileNotFoundError:
            pass
        self._lines = 0
        self._fd = -1
        self._written = 0  # lines appended (under the lock)
        self._synced = 0  # lines known to be on disk
        self._sync_lock = threading.Lock()
        self._rewrite()

    def add(self, nonce: str, expires_at: float, now: float) -> bool:
        if not super().add(nonce, expires_at, now):
            return False
        self._sync(self._written)  # durable before the request runs
        return True

    def _remembered(self, nonce: str, expires_at: float, now: float) -> None:
        if self._fd < 0:  # closed (its owner stopped) and used again
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, f"{expires_at:.0f} {nonce}\n".encode())
        self._lines += 1
        self._written += 1
        if self._lines > max(1024, 2 * len(self._expiry)):
            self._purge(now)
            self._rewrite()

    def _sync(self, line: int) -> None:
        """Return once the first ``line`` appended lines are on disk."""
        if self._synced >= line:
            return
        with self._sync_lock:
            if self._synced >= line:  # another thread's sync covered it meanwhile
                return
            with self._lock:
                target, fd = self._written, self._fd
                if fd >= 0:
                    fd = os.dup(fd)  # a rewrite may close the original meanwhile
            if fd >= 0:
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            self._synced = max(self._synced, target)

    def _rewrite(self) -> None:
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = "".join(f"{exp:.0f} {n}\n" for n, exp in self._expiry.items())
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _sync_dir(self.path)  # the rename is durable too
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._lines = len(self._expiry)
        self._synced = self._written  # every live entry is in the synced file

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _sync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _header(headers: _Headers, name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def verify_head(
    secret: bytes | str,
    method: str,
    path: str,
    headers: _Headers,
    *,
    now: float | None = None,
    skew: int = DEFAULT_SKEW,
) -> None:
    """Check a request's signature before reading its body, over the body hash it declares
    in ``X-Zagent-Content-Sha256`` (required here). :func:`verify` still checks the body
    read afterwards against the signature, and records the nonce."""
    declared = _header(headers, HEADER_CONTENT)
    if declared is None or not _SIGNATURE_RE.fullmatch(declared):
        raise AuthError(
            f"a body over {PREAUTH_BODY} bytes needs a valid {HEADER_CONTENT} header",
            code="AGENT.AUTH_MISSING",
        )
    _check(secret, method, path, headers, declared, now=now, skew=skew)


def verify(
    secret: bytes | str,
    method: str,
    path: str,
    headers: _Headers,
    body: bytes,
    *,
    nonces: NonceCache,
    now: float | None = None,
    skew: int = DEFAULT_SKEW,
) -> None:
    """Return if the request is signed with ``secret``, fresh and new; raise AuthError if not."""
    nonce, expires, clock = _check(
        secret, method, path, headers, hashlib.sha256(body).hexdigest(), now=now, skew=skew
    )
    if not nonces.add(nonce, expires, clock):
        raise AuthError("request was already seen (replay)", code="AGENT.AUTH_REPLAYED")


def _check(
    secret: bytes | str,
    method: str,
    path: str,
    headers: _Headers,
    body_hash: str,
    *,
    now: float | None,
    skew: int,
) -> tuple[str, float, float]:
    """Signature and freshness; returns (nonce, when it may be forgotten, the clock)."""
    ts = _header(headers, HEADER_TIMESTAMP)
    nonce = _header(headers, HEADER_NONCE)
    sig = _header(headers, HEADER_SIGNATURE)
    if ts is None or nonce is None or sig is None:
        raise AuthError(
            "request is not signed: missing "
            + ", ".join(
                h
                for h, v in ((HEADER_TIMESTAMP, ts), (HEADER_NONCE, nonce), (HEADER_SIGNATURE, sig))
                if v is None
            ),
            code="AGENT.AUTH_MISSING",
        )
    if not (
        _TIMESTAMP_RE.fullmatch(ts) and _NONCE_RE.fullmatch(nonce) and _SIGNATURE_RE.fullmatch(sig)
    ):
        raise AuthError("malformed signature headers", code="AGENT.AUTH_MISSING")
    msg = "\n".join((SCHEME, method.upper(), path, ts, nonce, body_hash)).encode()
    expected = hmac.new(_key(secret), msg, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        raise AuthError("bad request signature", code="AGENT.AUTH_FORGED")
    clock = time.time() if now is None else now
    signed_at = int(ts)
    if abs(clock - signed_at) > skew:
        raise AuthError(
            f"request timestamp is {int(clock - signed_at)} s away from this clock"
            f" (window {skew} s)",
            code="AGENT.AUTH_STALE",
        )
    return nonce, signed_at + skew, clock
