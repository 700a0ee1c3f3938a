"""The catalogue cache: ``$XDG_CACHE_HOME/zcli/catalogue-<hash>.json``.

The node's greeting carries the catalogue's hash; the catalogue itself is fetched only when
no cached file has that hash. Files are written atomically so that concurrent zcli runs
never read half a catalogue.

Beside each JSON file, ``catalogue-<hash>.<cache tag>.marshal`` holds the same data in the
interpreter's own serialisation (``marshal``, as ``__pycache__`` files do): a cold command
reads it in about half the time JSON takes to parse. It is only a faster copy, written by the
first run that reads the JSON, tied to the Python version by its name; an unreadable one is
ignored and the JSON read.

``catalogue-<hash>.<cache tag>.queries.marshal`` is a slice of it for the commands that only
read (``RES list``, ``RES get``, completing their arguments): every resource type and every
``Query<Type>`` API (all a table's join columns may ask), without the other APIs, error codes,
global configs and state machines. It is about a third of the whole, which is what a cold
``zcli vm list`` would otherwise spend most of its catalogue time on.
"""

from __future__ import annotations

import marshal
import os
import re
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # json only for the JSON copy, pathlib only to write: a cold zcli reads this
    from pathlib import Path
    from typing import Any

    from zcli.catalogue import Catalogue

_HASH_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
KEEP = 8  # catalogues of other nodes or versions kept besides the newest
QUERIES = "queries"  # the slice of the read-only commands (see the module doc)
_SLICE_KEYS = ("version", "errorKinds", "query", "resources")


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zcli")


def cache_dir() -> Path:
    from pathlib import Path

    return Path(_cache_dir())


def path_for(digest: str) -> Path:
    return cache_dir() / f"catalogue-{digest}.json"


def _fast_name(digest: str, part: str = "") -> str:
    return f"catalogue-{digest}.{sys.implementation.cache_tag}.{part + '.' if part else ''}marshal"


def queries_slice(catalogue: dict[str, Any]) -> dict[str, Any]:
    """The part of a catalogue the read-only commands use (see the module doc)."""
    out = {k: catalogue[k] for k in _SLICE_KEYS if k in catalogue}
    apis = catalogue.get("apis")
    out["apis"] = [
        a
        for a in (apis if isinstance(apis, list) else [])
        if isinstance(a, dict)
        and a.get("verb") == "query"
        and str(a.get("name", "")).startswith("Query")
    ]
    return out


def _read_fast(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            # our own file in the user's cache, as trusted as the bytecode in __pycache__
            fast = marshal.loads(f.read())  # noqa: S302
    except (OSError, ValueError, EOFError, TypeError):
        return None  # not written yet (or by another version)
    return fast if isinstance(fast, dict) else None


def load(digest: str, part: str = "") -> dict[str, Any] | None:
    """The cached catalogue with this hash, or its slice ``part`` (:data:`QUERIES`)."""
    if not _HASH_RE.match(digest):
        return None
    base = _cache_dir()
    if part:
        sliced = _read_fast(os.path.join(base, _fast_name(digest, part)))
        if sliced is not None:
            return sliced
    data = _read_fast(os.path.join(base, _fast_name(digest)))
    if data is None:
        import json

        try:
            with open(os.path.join(base, f"catalogue-{digest}.json"), "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        _write_fast(base, digest, data)
    elif part:  # written by a version without slices
        _write(os.path.join(base, _fast_name(digest, QUERIES)), marshal.dumps(queries_slice(data)))
    return queries_slice(data) if part else data


def catalogue(digest: str, reads: str | None = None) -> Catalogue | None:
    """The cached catalogue with this hash as a :class:`Catalogue`, or None. ``reads``: what
    a read-only command needs of it, the resource word of ``RES list|get`` or the name of a
    ``Query<Type>`` API; the read-only slice is returned when it has that (the whole
    catalogue otherwise: a word the slice does not know may still name something)."""
    from zcli.catalogue import Catalogue

    if reads:
        data = load(digest, QUERIES)
        if data is not None:
            sliced = Catalogue(data, digest)
            res = sliced.resource(reads)
            if (res is not None and res.query) or reads in sliced.apis:
                return sliced
    data = load(digest)
    return Catalogue(data, digest) if data is not None else None


def _write_fast(base: str, digest: str, data: dict[str, Any]) -> None:
    _write(os.path.join(base, _fast_name(digest)), marshal.dumps(data))
    _write(os.path.join(base, _fast_name(digest, QUERIES)), marshal.dumps(queries_slice(data)))


def _write(path: str, body: bytes) -> bool:
    """Write ``path`` atomically (a temporary file renamed over it); False when it cannot."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


def store(digest: str, catalogue: dict[str, Any]) -> None:
    """Write atomically; a cache that cannot be written only costs a refetch next time."""
    if not _HASH_RE.match(digest):
        return
    path = path_for(digest)
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(catalogue, ensure_ascii=False, separators=(",", ":")).encode()
    except (OSError, ValueError):  # ValueError: a lone surrogate cannot be written as UTF-8
        return
    if not _write(str(path), body):
        return
    _write_fast(str(path.parent), digest, catalogue)
    _prune(path)


def _prune(keep: Path) -> None:
    """Drop the oldest catalogues so that upgrades do not pile files up forever."""
    try:
        files = [p for p in cache_dir().glob("catalogue-*.json") if p != keep]
        files.sort(key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - KEEP + 1)]:
            for copy in old.parent.glob(f"{old.stem}.*.marshal"):
                copy.unlink(missing_ok=True)
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
