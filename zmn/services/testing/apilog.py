"""The API log: one JSON line per finished mutating API call, for ``zmn replay``.

Enabled by ``api.log=PATH`` in ``zmn.conf`` (relative paths are under the node's home). It
rides on the audit hook (:class:`~zmn.core.audit.ApiCallObserver`), so read-only calls are
not logged: replaying them changes nothing. Secret parameters are masked as in the job table.
A line holds the API, its arguments (as the caller gave them: not a ``resourceUuid`` the node
chose for a long create), the UUID the call created or acted on (so a replay can
map recorded UUIDs to new ones), the error code or null, and the time it took.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zmn.api.message import redacted_args
from zmn.core.audit import ApiCallRecord

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.apilog")


def log_path(node: Node) -> Path | None:
    value = node.config.get("api.log")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else node.config.home / path


def result_uuid(result: Any) -> str | None:
    """The UUID of the resource a call returned, if it returned one inventory."""
    if isinstance(result, dict):
        inv = result.get("inventory")
        uuid = inv.get("uuid") if isinstance(inv, dict) else None
        if isinstance(uuid, str):
            return uuid
    return None


def entry(record: ApiCallRecord) -> dict[str, Any]:
    args = redacted_args(record.message) if record.message is not None else record.raw_args
    raw = record.raw_args if isinstance(record.raw_args, dict) else {}
    if isinstance(args, dict) and args.get("resourceUuid") and not raw.get("resourceUuid"):
        # the node chose it (a long create names its resource from the start), the caller did
        # not: logged, a replay would create the resource under the recorded UUID instead of
        # a new one, and clash with it when replayed on the node the log came from
        args = {k: v for k, v in args.items() if k != "resourceUuid"}
    return {
        "time": record.started.isoformat(timespec="milliseconds"),
        "api": record.api,
        "args": args,
        "uuid": result_uuid(record.result),
        "error": record.error,
        "seconds": round(record.seconds, 4),
    }


class ApiLog:
    """Appends entries to the log file (line-buffered: a crash loses at most the last line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()
        self.written = 0

    def api_called(self, record: ApiCallRecord) -> None:
        line = json.dumps(entry(record), default=str, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self.written += 1

    def close(self) -> None:
        self._fh.close()
