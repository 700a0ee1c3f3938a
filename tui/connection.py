"""Where to connect and with which session: the same rules as ``zcli``.

Endpoint: ``--endpoint``, else ``$ZMN_ENDPOINT``, else the node's default unix socket.
Session: ``--session``, else ``$ZMN_SESSION``, else the one ``zcli login`` saved for that
endpoint in ``${XDG_CONFIG_HOME:-~/.config}/zcli/sessions.json``. The file is read
defensively: a value may be the session string itself or an object holding ``session`` or
``uuid``; anything unreadable counts as no session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zmn.client import default_endpoint


def sessions_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "zcli" / "sessions.json"


def stored_session(endpoint: str, env: Mapping[str, str] | None = None) -> str | None:
    try:
        data: Any = json.loads(sessions_file(env).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get(endpoint)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        for key in ("session", "uuid", "sessionUuid"):
            found = value.get(key)
            if isinstance(found, str) and found:
                return found
    return None


def resolve(
    endpoint: str | None, session: str | None, env: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """The endpoint and session to use, from options, environment and the zcli session file."""
    env = os.environ if env is None else env
    chosen = endpoint or env.get("ZMN_ENDPOINT") or default_endpoint()
    return chosen, session or env.get("ZMN_SESSION") or stored_session(chosen, env)
