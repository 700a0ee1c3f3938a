"""Where a node's home and socket are by default, with no import beyond ``os``.

The client, zcli's completion callback (which must start in a few milliseconds) and the node
all name the default socket from here, so the session and name caches keyed by it agree.
"""

from __future__ import annotations

import os


def home_str() -> str:
    """``$ZMN_HOME`` (default ``~/.local/share/zmn``) spelled as :class:`pathlib.PurePosixPath`
    spells it (no empty or ``.`` parts, no trailing slash), without importing pathlib."""
    env = os.environ.get("ZMN_HOME")
    if not env:
        return os.path.join(os.path.expanduser("~"), ".local", "share", "zmn")
    path = os.path.expanduser(env)
    if path.startswith("~"):
        raise RuntimeError("Could not determine home directory.")  # as pathlib says it
    root = "/" if path.startswith("/") else ""
    if path.startswith("//") and not path.startswith("///"):
        root = "//"
    return (root + "/".join(p for p in path.split("/") if p and p != ".")) or "."


def default_socket_endpoint() -> str:
    """``unix:`` and the socket in the default home (``$ZMN_ENDPOINT`` is the caller's)."""
    home = home_str()
    return "unix:" + (os.path.join(home, "zmn.sock") if home != "." else "zmn.sock")
