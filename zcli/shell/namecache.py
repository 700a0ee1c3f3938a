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

import json
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from zcli.catalogue import Catalogue
from zcli.session import key as endpoint_key

TTL = 10.0  # seconds before a type's names are refreshed again
CATALOGUE_TTL = 300.0  # seconds before a callback checks the node's catalogue hash again
LIMIT = 2000  # rows per type: completion is for picking, not for listing a whole cloud

Rows = list[tuple[str, str]]
_HASH_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def cache_dir() -> Path:
    """:func:`zcli.cache.cache_dir`, repeated so that a completion callback reads cached
    catalogues with :mod:`json`: importing :mod:`zcli.cache` loads msgspec, about 20 ms of
    CPU a Tab. A test checks that both name the same directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zcli"


def load_catalogue(digest: str) -> Catalogue | None:
    """The cached catalogue with this hash (the files :mod:`zcli.cache` writes), or None."""
    if not _HASH_RE.match(digest):
        return None
    try:
        data = json.loads((cache_dir() / f"catalogue-{digest}.json").read_bytes())
    except (OSError, ValueError):
        return None
    return Catalogue(data, digest) if isinstance(data, dict) else None


def state_path(endpoint: str, session: str | None) -> Path:
    # crc32 and adler32, not hashlib: loading OpenSSL costs a completion callback 10 ms
    key = f"{endpoint_key(endpoint)}\0{session or ''}".encode()
    return cache_dir() / f"names-{zlib.crc32(key):08x}{zlib.adler32(key):08x}.json"


class NameCache:
    """Names of one endpoint as seen by one session; safe to refresh from another thread."""

    def __init__(self, endpoint: str, session: str | None, ttl: float = TTL) -> None:
        self.endpoint = endpoint
        self.session = session
        self.ttl = ttl
        self.path = state_path(endpoint, session)
        self._lock = threading.Lock()
        self._client: Any = None
        self._dirty = False
        self.data: dict[str, Any] = self._load()
        self.types: dict[str, dict[str, Any]] = dict(self.data.get("types") or {})

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
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
        self, deadline: float, guard: Callable[[], AbstractContextManager[None]]
    ) -> Catalogue | None:
        """The endpoint's catalogue: from the cache when its hash was checked lately, else
        asked of the node under ``guard``; when the node does not answer, the last one."""
        digest = str(self.data.get("catalogueHash") or "")
        checked = float(self.data.get("checked") or 0)
        if digest and time.time() - checked < CATALOGUE_TTL:
            known = load_catalogue(digest)
            if known is not None:
                return known
        try:
            with guard():
                client = self.client()
                fresh = str(client.hello.get("catalogueHash") or "")
                found = load_catalogue(fresh) if fresh else None
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
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _newest() -> Catalogue | None:
    from zcli import cache

    newest = cache.newest()
    return Catalogue(newest[1], newest[0]) if newest else None
