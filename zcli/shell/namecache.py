"""Live names for completion: the UUIDs and names of resources, per endpoint and session.

Completion must never wait on the node, so it reads names from here. The shell keeps them in
memory and refreshes stale types in a background thread; ``zcli __complete`` (a new process
per Tab) reads ``$XDG_CACHE_HOME/zcli/names-<key>.json`` and refreshes a stale type with one
``Query<Type> fields=uuid,name`` under its time budget. The file also remembers the endpoint's
catalogue hash, so a callback finds the cached catalogue without connecting. It names
resources, so it is written with mode 0600; the key hashes the endpoint and the session
because different accounts see different resources.
"""

from __future__ import annotations

import _thread
import os
import time
import zlib

from zcli.catalogue import Catalogue
from zcli.session import key as endpoint_key
from zmn.api import cjson  # json's C scanner and encoder: a Tab does not import json

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # a completion callback imports this module: pathlib, typing and threading
    from collections.abc import Callable, Iterable  # are not worth their start-up time there
    from contextlib import AbstractContextManager
    from pathlib import Path
    from typing import Any

TTL = 10.0  # seconds before a type's names are refreshed again
CATALOGUE_TTL = 300.0  # seconds before a callback checks the node's catalogue hash again
LIMIT = 2000  # rows per type: completion is for picking, not for listing a whole cloud

Rows = list[tuple[str, str]]


def _cache_dir() -> str:
    """:func:`zcli.cache.cache_dir`, repeated (as a string) so that a completion callback
    reads cached catalogues without importing :mod:`zcli.cache` or :mod:`pathlib`. A test
    checks that both name the same directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zcli")


def cache_dir() -> Path:
    from pathlib import Path

    return Path(_cache_dir())


def load_catalogue(digest: str, reads: str | None = None) -> Catalogue | None:
    """The cached catalogue with this hash, or None (:func:`zcli.cache.catalogue`, with
    its read-only slice for ``reads``)."""
    from zcli import cache

    return cache.catalogue(digest, reads)


def _state_file(endpoint: str, session: str | None) -> str:
    # crc32 and adler32, not hashlib: loading OpenSSL costs a completion callback 10 ms
    key = f"{endpoint_key(endpoint)}\0{session or ''}".encode()
    return os.path.join(_cache_dir(), f"names-{zlib.crc32(key):08x}{zlib.adler32(key):08x}.json")


def state_path(endpoint: str, session: str | None) -> Path:
    from pathlib import Path

    return Path(_state_file(endpoint, session))


class NameCache:
    """Names of one endpoint as seen by one session; safe to refresh from another thread."""

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.file)

    def __init__(self, endpoint: str, session: str | None, ttl: float = TTL) -> None:
        self.endpoint = endpoint
        self.session = session
        self.ttl = ttl
        self.file = _state_file(endpoint, session)
        self._lock = _thread.allocate_lock()
        self._client: Any = None
        self._dirty = False
        self.data: dict[str, Any] = self._load()
        self.types: dict[str, dict[str, Any]] = dict(self.data.get("types") or {})

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.file, "rb") as f:
                data = cjson.loads(f.read().decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    # ----------------------------------------------------------------- reading

    def rows(self, type_name: str) -> Rows:
        entry = self.types.get(type_name) or {}
        return [(str(r[0]), str(r[1] or "")) for r in entry.get("rows", []) if r]

    def stale(self, type_name: str) -> bool:
        entry = self.types.get(type_name)
        return entry is None or time.time() - float(entry.get("at", 0)) > self.ttl

    def known(self, type_name: str) -> bool:
        return type_name in self.types

    def invalidate(self) -> None:
        """After a change made through this client: refresh every type on its next use."""
        with self._lock:
            self.types = {t: {**e, "at": 0} for t, e in self.types.items()}

    # ----------------------------------------------------------------- refreshing

    def client(self) -> Any:
        if self._client is None:
            from zmn.client import Client

            self._client = Client(self.endpoint, self.session).connect()
        return self._client

    def close(self) -> None:
        if self._dirty:
            self.save()
        if self._client is not None:
            self._client.close()
            self._client = None

    def refresh(self, catalogue: Catalogue, types: Iterable[str], timeout: float = 5) -> None:
        """Fetch the names of ``types`` (one query each); a failure leaves the old names."""
        for type_name in types:
            rows = self.fetch(catalogue, type_name, timeout)
            if rows is None:
                continue
            with self._lock:
                self.types = {**self.types, type_name: {"at": time.time(), "rows": rows}}
                self._dirty = True

    def fetch(self, catalogue: Catalogue, type_name: str, timeout: float) -> Rows | None:
        res = catalogue.resource_of_type(type_name)
        if res is None or res.query is None:
            return None
        have = {f["name"] for f in res.fields}
        if "uuid" not in have:
            return None
        fields = ["uuid", "name"] if "name" in have else ["uuid"]
        args: dict[str, Any] = {"fields": fields, "limit": LIMIT}
        if "name" in have:
            args["sortBy"] = "name"
        result = self.client().call(res.query, args, timeout=timeout)
        rows = result.get("inventories", []) if isinstance(result, dict) else []
        return [(str(r.get("uuid", "")), str(r.get("name") or "")) for r in rows]

    def catalogue(
        self,
        deadline: float,
        guard: Callable[[], AbstractContextManager[None]],
        reads: str | None = None,
    ) -> Catalogue | None:
        """The endpoint's catalogue: from the cache when its hash was checked lately, else
        asked of the node under ``guard``; when the node does not answer, the last one.
        ``reads``: see :func:`load_catalogue`."""
        digest = str(self.data.get("catalogueHash") or "")
        checked = float(self.data.get("checked") or 0)
        if digest and time.time() - checked < CATALOGUE_TTL:
            known = load_catalogue(digest, reads)
            if known is not None:
                return known
        try:
            with guard():
                client = self.client()
                fresh = str(client.hello.get("catalogueHash") or "")
                found = load_catalogue(fresh, reads) if fresh else None
                if found is None:
                    from zcli import cache

                    reply = client.call("GetApiCatalogue")
                    data, fresh = reply["catalogue"], str(reply.get("hash") or fresh)
                    cache.store(fresh, data)
                    found = Catalogue(data, fresh)
        except Exception:  # unreachable, expired budget: fall back below
            self.close()
            known = load_catalogue(digest) if digest else None
            return known or _newest()
        self.remember(fresh)
        return found

    def remember(self, digest: str) -> None:
        """Note the endpoint's catalogue hash (the shell does so after it connects)."""
        with self._lock:
            self.data["catalogueHash"] = digest
            self.data["checked"] = time.time()
            self._dirty = True

    def save(self) -> None:
        """Write atomically with mode 0600; a cache that cannot be written costs a refetch."""
        with self._lock:
            doc = {**self.data, "endpoint": self.endpoint, "types": self.types}
            self._dirty = False
        folder, name = os.path.split(self.file)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{_thread.get_ident()}.tmp")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(cjson.dumps(doc))
            os.replace(tmp, self.file)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _newest() -> Catalogue | None:
    from zcli import cache

    newest = cache.newest()
    return Catalogue(newest[1], newest[0]) if newest else None
