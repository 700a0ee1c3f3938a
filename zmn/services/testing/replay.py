"""Re-run an API log (``api.log``) against a node: ``zmn replay LOG``.

Each logged call is sent again in order. UUIDs that the recorded calls created are mapped to
the UUIDs the replay creates (a recorded ``inventory.uuid`` -> the new one), and every string
argument equal to a mapped UUID is rewritten, so a log replays on an empty node as well as on
the node it came from. Names are kept as they were, and most APIs accept names for
references. A call whose outcome differs (an error code where the log had success, or the
reverse, or another code) is a mismatch; the replay goes on unless told to stop. The test
hooks (``InjectCrash``, ``ClearCrashPoints``) are skipped: replaying a crash would kill the
node the log is replayed on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zmn.services.testing.apilog import result_uuid

SKIPPED = frozenset({"InjectCrash", "ClearCrashPoints"})


def read_log(path: Path) -> list[dict[str, Any]]:
    """The entries of a log; a torn last line (the node died while writing it) is skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@dataclass
class Replayer:
    """Maps UUIDs and compares outcomes; the caller sends the calls (sync or async)."""

    uuids: dict[str, str] = field(default_factory=dict)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0

    def prepare(self, entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        args = self._map(entry.get("args") or {})
        assert isinstance(args, dict)  # noqa: S101 - type narrowing for mypy, not a runtime check
        return str(entry["api"]), args

    def _map(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.uuids.get(value, value)
        if isinstance(value, list):
            return [self._map(v) for v in value]
        if isinstance(value, dict):
            return {k: self._map(v) for k, v in value.items()}
        return value

    def record(self, entry: dict[str, Any], result: Any, error: str | None) -> bool:
        """Note the replayed outcome; returns whether it matches the recorded one."""
        self.sent += 1
        old, new = entry.get("uuid"), result_uuid(result)
        if isinstance(old, str) and new is not None:
            self.uuids[old] = new
        if error == entry.get("error"):
            return True
        self.mismatches.append(
            {
                "index": self.sent - 1,
                "api": entry["api"],
                "recorded": entry.get("error"),
                "replayed": error,
            }
        )
        return False


def replay_with_client(
    entries: Iterable[dict[str, Any]], client: Any, *, stop_on_mismatch: bool = False
) -> Replayer:
    """Replay through a synchronous :class:`zmn.client.Client`."""
    from zmn.api.errors import ZmnError

    rp = Replayer()
    for entry in entries:
        if entry.get("api") in SKIPPED:
            continue
        api, args = rp.prepare(entry)
        try:
            result, error = client.call(api, args), None
        except ZmnError as exc:
            result, error = None, exc.code
        if not rp.record(entry, result, error) and stop_on_mismatch:
            break
    return rp
