"""The HMAC request-signing scheme shared by the node and zagent (zmn.api.agentauth)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from zmn.api import agentauth
from zmn.api.agentauth import AuthError, NonceCache, sign, verify

SECRET = b"s" * 32
NOW = 1_700_000_000
NONCE = "n0nce-0123456789abcdef"


def _verify(headers: dict[str, str], *, method="POST", path="/v1/vm/start", body=b"{}", **kw):
    kw.setdefault("nonces", NonceCache())
    kw.setdefault("now", NOW)
    verify(SECRET, method, path, headers, body, **kw)


def _headers(**kw) -> dict[str, str]:
    kw.setdefault("timestamp", NOW)
    return sign(SECRET, "POST", "/v1/vm/start", b"{}", **kw)


def test_known_answer_vector_pins_the_string_to_sign():
    # other implementations (the node's async client) must produce exactly this
    headers = sign(SECRET, "post", "/v1/vm/list?x=1", b"", timestamp=NOW, nonce=NONCE)
    expected_msg = "\n".join(
        [
            "ZAGENT-HMAC-SHA256",
            "POST",
            "/v1/vm/list?x=1",
            str(NOW),
            NONCE,
            hashlib.sha256(b"").hexdigest(),
        ]
    ).encode()
    assert agentauth.string_to_sign("post", "/v1/vm/list?x=1", str(NOW), NONCE, b"") == expected_msg
    assert headers == {
        "X-Zagent-Timestamp": str(NOW),
        "X-Zagent-Nonce": NONCE,
        "X-Zagent-Signature": hmac.new(SECRET, expected_msg, hashlib.sha256).hexdigest(),
        # the body hash again, so that a receiver can check the signature before the body
        "X-Zagent-Content-Sha256": hashlib.sha256(b"").hexdigest(),
    }


def test_valid_request_passes_and_header_names_are_case_insensitive():
    headers = {k.lower(): v for k, v in _headers().items()}
    _verify(headers)


def test_str_and_bytes_secrets_agree():
    a = sign(SECRET.decode(), "GET", "/v1/ping", timestamp=NOW, nonce=NONCE)
    b = sign(SECRET, "GET", "/v1/ping", timestamp=NOW, nonce=NONCE)
    assert a == b


@pytest.mark.parametrize(
    "missing",
    [agentauth.HEADER_TIMESTAMP, agentauth.HEADER_NONCE, agentauth.HEADER_SIGNATURE],
)
def test_missing_header_is_refused(missing):
    headers = _headers()
    del headers[missing]
    with pytest.raises(AuthError) as exc:
        _verify(headers)
    assert exc.value.code == "AGENT.AUTH_MISSING"
    assert missing in exc.value.message


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Zagent-Timestamp", "12.5"),
        ("X-Zagent-Timestamp", "-5"),
        ("X-Zagent-Nonce", "short"),
        ("X-Zagent-Nonce", "has space in the nonce value"),
        ("X-Zagent-Signature", "ABCDEF"),
    ],
)
def test_malformed_headers_are_refused(header, value):
    headers = _headers()
    headers[header] = value
    with pytest.raises(AuthError) as exc:
        _verify(headers)
    assert exc.value.code == "AGENT.AUTH_MISSING"


@pytest.mark.parametrize(
    "tamper",
    [
        {"method": "GET"},
        {"path": "/v1/vm/destroy"},
        {"path": "/v1/vm/start?force=1"},
        {"body": b'{"vm": {}}'},
    ],
)
def test_any_change_to_method_path_or_body_is_forged(tamper):
    with pytest.raises(AuthError) as exc:
        _verify(_headers(), **tamper)
    assert exc.value.code == "AGENT.AUTH_FORGED"


def test_wrong_secret_is_forged():
    headers = sign(b"x" * 32, "POST", "/v1/vm/start", b"{}", timestamp=NOW)
    with pytest.raises(AuthError) as exc:
        _verify(headers)
    assert exc.value.code == "AGENT.AUTH_FORGED"
    assert exc.value.kind == "PermissionDenied"


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
def test_outside_the_skew_window_is_stale(offset):
    with pytest.raises(AuthError) as exc:
        _verify(_headers(timestamp=NOW + offset))
    assert exc.value.code == "AGENT.AUTH_STALE"


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_inside_the_skew_window_passes(offset):
    _verify(_headers(timestamp=NOW + offset))


def test_custom_skew():
    with pytest.raises(AuthError):
        _verify(_headers(timestamp=NOW - 31), skew=30)


def test_replay_inside_the_window_is_refused():
    nonces = NonceCache()
    headers = _headers()
    _verify(headers, nonces=nonces)
    with pytest.raises(AuthError) as exc:
        _verify(headers, nonces=nonces, now=NOW + 200)
    assert exc.value.code == "AGENT.AUTH_REPLAYED"
    # after the window the same headers are stale, never accepted again
    with pytest.raises(AuthError) as exc:
        _verify(headers, nonces=nonces, now=NOW + 301)
    assert exc.value.code == "AGENT.AUTH_STALE"


def test_forged_requests_do_not_fill_the_nonce_cache():
    nonces = NonceCache()
    bad = _headers()
    bad["X-Zagent-Signature"] = "0" * 64
    with pytest.raises(AuthError):
        _verify(bad, nonces=nonces)
    assert len(nonces) == 0
    _verify(_headers(nonce=bad["X-Zagent-Nonce"]), nonces=nonces)  # the real one still works


def test_nonce_cache_is_bounded_and_drops_oldest_first():
    cache = NonceCache(max_entries=3)
    for i in range(5):
        assert cache.add(f"nonce-{i}", expires_at=1000 + i, now=0)
    assert len(cache) <= 3
    assert not cache.add("nonce-4", expires_at=2000, now=0)  # newest kept
    assert cache.add("nonce-4", expires_at=2000, now=1005)  # expired entries are forgotten


def test_secrets_are_long_and_short_secrets_are_refused():
    assert len(agentauth.new_secret()) == 64
    assert agentauth.new_secret() != agentauth.new_secret()
    with pytest.raises(ValueError):
        sign(b"short", "GET", "/v1/ping")


def test_the_head_of_a_large_request_is_checked_before_its_body():
    headers = sign(SECRET, "POST", "/v1/x", b"y" * 100_000, timestamp=NOW, nonce=NONCE)
    agentauth.verify_head(SECRET, "POST", "/v1/x", headers, now=NOW)  # no body needed
    with pytest.raises(AuthError) as exc:
        agentauth.verify_head(b"z" * 32, "POST", "/v1/x", headers, now=NOW)
    assert exc.value.code == "AGENT.AUTH_FORGED"
    bare = {k: v for k, v in headers.items() if k != agentauth.HEADER_CONTENT}
    with pytest.raises(AuthError) as exc:
        agentauth.verify_head(SECRET, "POST", "/v1/x", bare, now=NOW)
    assert exc.value.code == "AGENT.AUTH_MISSING"
    # a body other than the declared one fails the full check afterwards
    with pytest.raises(AuthError) as exc:
        verify(SECRET, "POST", "/v1/x", headers, b"y" * 99_999, nonces=NonceCache(), now=NOW)
    assert exc.value.code == "AGENT.AUTH_FORGED"


def test_persistent_nonces_survive_a_restart_and_forget_expired_ones(tmp_path):
    path = str(tmp_path / "nonces")
    first = agentauth.PersistentNonceCache(path, now=NOW)
    assert first.add("a" * 16, NOW + 300, NOW)
    assert first.add("b" * 16, NOW + 10, NOW)
    first.close()
    later = agentauth.PersistentNonceCache(path, now=NOW + 100)
    assert not later.add("a" * 16, NOW + 300, NOW + 100)  # still inside its window
    assert later.add("b" * 16, NOW + 400, NOW + 100)  # expired: forgotten
    for i in range(3000):  # the file is compacted, not grown without bound
        later.add(f"n{i:015d}", NOW + 101, NOW + 100)
    later.close()
    lines = (tmp_path / "nonces").read_text().splitlines()
    assert len(lines) <= 2 * 3002 and len(lines) >= 3002
