"""Turning an :class:`~zmn.core.audit.ApiCallRecord` into an audit row.

What is kept of the arguments:

* once ``decode_args`` accepted them, the decoded message with every ``Secret()`` parameter
  masked (:func:`~zmn.api.message.redacted_args`) and names already resolved to UUIDs;
* before that (no session, bad session, unknown parameter...), only the argument *names*,
  each value masked: unvalidated input may hold a password under a misspelt name;
* a summary row of refused anonymous calls: ``{"refusedCalls": N}`` only;
* strings longer than :data:`MAX_STRING` and lists longer than :data:`MAX_ITEMS` are cut, so
  a 16 MiB request cannot make a 16 MiB audit row.

The session UUID is a bearer secret, so a row holds only a fingerprint of it
(:func:`session_fingerprint`), enough to tell one session's calls from another's.
"""

from __future__ import annotations

from typing import Any

import msgspec

from zmn.api.message import REDACTED, UUID_RE, CreateMessage, redacted_args
from zmn.core.audit import ApiCallRecord

MAX_STRING = 1024
MAX_ITEMS = 100
MAX_KEYS = 64
MAX_ARGS_BYTES = 32 * 1024
_encoder = msgspec.json.Encoder()


def session_fingerprint(session_uuid: str | None) -> str | None:
    """The first 16 hex digits of the SHA-256 of the session token. A principal carries the
    session's row key, which is already that digest (``identity.sessions.digest``)."""
    if not session_uuid:
        return None
    return session_uuid[:16]


def shrink(value: Any, depth: int = 0) -> Any:
    """``value`` with long strings and lists cut and deep nesting flattened."""
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else f"{value[:MAX_STRING]}...({len(value)} chars)"
    if depth >= 8:
        return "..."
    if isinstance(value, list):
        items = [shrink(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"...({len(value)} items)")
        return items
    if isinstance(value, dict):
        return {str(k)[:128]: shrink(v, depth + 1) for k, v in list(value.items())[:MAX_KEYS]}
    return value


def args_text(record: ApiCallRecord) -> str:
    """The arguments as JSON, redacted and bounded (see the module docstring)."""
    if record.refused:  # a summary row of refused anonymous calls (zmn.core.audit)
        kept: Any = {"refusedCalls": record.refused}
    elif record.message is not None:
        kept = shrink(redacted_args(record.message))
    elif isinstance(record.raw_args, dict):
        kept = {str(k)[:128]: REDACTED for k in list(record.raw_args)[:MAX_KEYS]}
    else:
        kept = {}
    text = _encoder.encode(kept)
    if len(text) > MAX_ARGS_BYTES:
        names = list(kept)[:MAX_KEYS] if isinstance(kept, dict) else []
        text = _encoder.encode({"$truncated": len(text), "names": names})
    return text.decode()


def target_uuid(record: ApiCallRecord) -> str | None:
    """The resource the call acted on: ``uuid``, else ``resourceUuid``, else the created one.

    Only for APIs of a resource type other than Session: a login's reply holds the session
    UUID, which must never reach the audit table.
    """
    spec = record.spec
    if spec is None or spec.resource in (None, "Session"):
        return None
    for name in ("uuid", "resourceUuid"):
        value = getattr(record.message, name, None)
        if isinstance(value, str) and UUID_RE.match(value):
            return value
    result = record.result
    creates = isinstance(record.message, CreateMessage) or spec.verb in ("create", "add")
    if creates and isinstance(result, dict):
        inv = result.get("inventory")
        uuid = inv.get("uuid") if isinstance(inv, dict) else None
        if isinstance(uuid, str) and UUID_RE.match(uuid):
            return uuid
    return None


def audit_row(record: ApiCallRecord, node_uuid: str) -> dict[str, Any]:
    """Column values of the audit row for one finished call."""
    spec, who = record.spec, record.principal
    known = who is not None and bool(who.accountUuid)
    return {
        "createDate": record.started,
        "apiName": record.api[:128],
        "resourceType": spec.resource if spec else None,
        "resourceUuid": target_uuid(record),
        "args": args_text(record),
        "accountUuid": who.accountUuid if known and who else None,
        "accountName": who.accountName[:255] if known and who else None,
        "userUuid": who.userUuid if who else None,
        "sessionId": session_fingerprint(who.sessionUuid if who else None),
        "peer": record.peer[:255],
        "result": (record.error or "ok")[:128],
        "jobUuid": record.job_uuid,
        "requestId": record.request_id[:64] or None,
        "durationMs": round(record.seconds * 1000, 3),
        "managementNodeUuid": node_uuid,
    }
