"""cloud-init inputs, checked the same way by the node, the agent and zcli.

Part of the API contract (shipped to hosts with the agent): standard library only.

- user data: text, or base64 of anything (ZStack's ``userdata::`` tag holds base64), at most
  :data:`MAX_USER_DATA` bytes once decoded;
- SSH keys: OpenSSH public key lines (``type base64 [comment]``) whose base64 part holds a
  key of the named type; a private key, a fingerprint or a path is refused.
"""

from __future__ import annotations

import base64
import binascii

from zmn.api.errors import InvalidArgument

MAX_USER_DATA = 64 * 1024
MAX_SSH_KEYS = 32
KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)  # fmt: skip
_TEXT_STARTS = ("#", "Content-Type:", "MIME-Version:")


def _bad(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", code="ARG.INVALID", field=field)


def public_key(value: object, field: str = "sshKeys") -> str:
    """The key line, stripped; InvalidArgument naming ``field`` when it is not a public key."""
    if not isinstance(value, str):
        raise _bad(field, "must be a string holding an OpenSSH public key")
    s = value.strip()
    if "\n" in s or "\r" in s or "\0" in s or len(s) > 16384:
        raise _bad(field, "must be one OpenSSH public key line, at most 16384 characters")
    parts = s.split(None, 2)
    if "PRIVATE KEY" in s or len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise _bad(
            field,
            "is not an OpenSSH public key: give the contents of a .pub file"
            " ('ssh-ed25519 AAAA... comment')",
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise _bad(field, "the key's base64 part does not decode") from None
    if blob[4 : 4 + len(parts[0])] != parts[0].encode():
        raise _bad(field, f"the key's base64 part does not hold an {parts[0]} key")
    return s


def public_keys(values: list[str], field: str = "sshKeys") -> list[str]:
    if len(values) > MAX_SSH_KEYS:
        raise _bad(field, f"at most {MAX_SSH_KEYS} keys")
    out: list[str] = []
    for i, k in enumerate(values):
        key = public_key(k, f"{field}[{i}]")
        if key not in out:
            out.append(key)
    return out


def user_data_bytes(value: str, field: str = "userData") -> bytes:
    """User data given as text or base64, decoded; too large -> InvalidArgument."""
    if len(value) > MAX_USER_DATA * 2:
        raise _bad(field, f"larger than {MAX_USER_DATA} bytes (64 KiB)")
    data = value.encode()
    if not value.lstrip().startswith(_TEXT_STARTS):
        try:
            data = base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            data = value.encode()  # plain text after all (a script without "#!", say)
    if len(data) > MAX_USER_DATA:
        raise _bad(field, f"larger than {MAX_USER_DATA} bytes (64 KiB): {len(data)} bytes")
    return data


def user_data_b64(value: str, field: str = "userData") -> str:
    """The user data as the node keeps it and sends it to the agent: base64."""
    return base64.b64encode(user_data_bytes(value, field)).decode()
