"""The catalogue cache: ``$XDG_CACHE_HOME/zcli/catalogue-<hash>.json``.

The node's greeting carries the catalogue's hash; the catalogue itself is fetched only when
no cached file has that hash. Files are written atomically so that concurrent zcli runs
never read half a catalogue.
"""

from __future__ import annotations

import json
import os
import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # json, not msgspec, and pathlib only to write: a cold zcli reads this
    from pathlib import Path
    from typing import Any

_HASH_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
KEEP = 8  # catalogues of other nodes or versions kept besides the newest


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zcli")


def cache_dir() -> Path:
    from pathlib import Path

    return Path(_cache_dir())


def path_for(digest: str) -> Path:
    return cache_dir() / f"catalogue-{digest}.json"


def load(digest: str) -> dict[str, Any] | None:
    if not _HASH_RE.match(digest):
        return None
    try:
        with open(os.path.join(_cache_dir(), f"catalogue-{digest}.json"), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def store(digest: str, catalogue: dict[str, Any]) -> None:
    """Write atomically; a cache that cannot be written only costs a refetch next time."""
    if not _HASH_RE.match(digest):
        return
    path = path_for(digest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(json.dumps(catalogue, ensure_ascii=False, separators=(",", ":")).encode())
        os.replace(tmp, path)
    except (OSError, ValueError):  # ValueError: a lone surrogate cannot be written as UTF-8
        tmp.unlink(missing_ok=True)
        return
    _prune(path)


def _prune(keep: Path) -> None:
    """Drop the oldest catalogues so that upgrades do not pile files up forever."""
    try:
        files = [p for p in cache_dir().glob("catalogue-*.json") if p != keep]
        files.sort(key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - KEEP + 1)]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def newest() -> tuple[str, dict[str, Any]] | None:
    """The most recently written catalogue (for help when the node cannot be reached)."""
    try:
        files = sorted(
            cache_dir().glob("catalogue-*.json"), key=lambda p: p.stat().st_mtime, reverse=True
        )
    except OSError:
        return None
    for path in files:
        digest = path.stem.removeprefix("catalogue-")
        data = load(digest)
        if data is not None:
            return digest, data
    return None
