"""Saved views: a named query, columns and sort of one resource type, kept per user.

A view is what a resource screen shows: the type, the filter as typed (``state=Running
vmNics.l3Network.name=pub``), fixed conditions (a drill-down's ``hostUuid=…``), the columns
and the sort. Views are stored in ``${XDG_CONFIG_HOME:-~/.config}/zstack/ztui/views.json``,
one list per *endpoint and user* (the account or user UUID behind the session, ``peer`` for
the owner of the unix socket), so two accounts on one node, or one user on two nodes, do not
see each other's views. The file is small; it is re-read before each change and replaced
atomically, so two dashboards open at once do not lose each other's views.

Built-in views (``:mn``, the management nodes with their ring ownership) use the same shape
and are offered in the palette next to the saved ones; they cannot be deleted.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1


@dataclass
class View:
    name: str
    type: str  # the resource type (``VmInstance``)
    filter: str = ""  # as typed after ``/``
    base: list[str] = field(default_factory=list)  # fixed conditions (drill-downs)
    columns: list[str] | None = None  # None: the catalogue's columns
    sort_by: str | None = None
    descending: bool = False
    refresh: float = 0.0  # seconds between quiet re-queries (types without events); 0: none
    builtin: bool = False

    @property
    def key(self) -> str:
        """What to type in the palette: ``running-vms-on-l3-pub``."""
        return slug(self.name)

    def describe(self) -> str:
        parts = [self.type, *self.base]
        if self.filter:
            parts.append(self.filter)
        if self.sort_by:
            parts.append(f"sort {self.sort_by} {'↓' if self.descending else '↑'}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("builtin")
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> View | None:
        try:
            columns = data.get("columns")
            return cls(
                name=str(data["name"]),
                type=str(data["type"]),
                filter=str(data.get("filter") or ""),
                base=[str(c) for c in data.get("base") or []],
                columns=[str(c) for c in columns] if isinstance(columns, list) else None,
                sort_by=str(data["sort_by"]) if data.get("sort_by") else None,
                descending=bool(data.get("descending")),
                refresh=float(data.get("refresh") or 0.0),
            )
        except (KeyError, TypeError, ValueError):
            return None  # a hand-edited entry that does not parse is skipped, not fatal


BUILTIN = [
    View(
        "mn",
        "ManagementNode",
        columns=[
            "uuid",
            "name",
            "hostName",
            "state",
            "onRing",
            "ringShare",
            "heartbeat",
            "version",
        ],
        sort_by="name",
        refresh=2.0,
        builtin=True,
    ),
]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "view"


def views_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "zstack" / "ztui" / "views.json"


class ViewStore:
    """The saved views of one endpoint and user, in the shared file."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path
        self.owner = owner  # "<endpoint> <user>"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"version": VERSION, "views": {}}
        if not isinstance(data, dict) or not isinstance(data.get("views"), dict):
            return {"version": VERSION, "views": {}}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".views-", dir=self.path.parent)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def saved(self) -> list[View]:
        entries = self._read()["views"].get(self.owner) or []
        views = [View.from_json(e) for e in entries if isinstance(e, dict)]
        return [v for v in views if v is not None]

    def all(self) -> list[View]:
        """Saved views first, then built-ins whose key no saved view took."""
        saved = self.saved()
        taken = {v.key for v in saved}
        return saved + [v for v in BUILTIN if v.key not in taken]

    def find(self, key: str) -> View | None:
        key = slug(key.lstrip(":@"))
        return next((v for v in self.all() if v.key == key), None)

    def save(self, view: View) -> None:
        """Add ``view``, replacing a saved one with the same key."""
        data = self._read()
        entries = [
            e
            for e in data["views"].get(self.owner) or []
            if isinstance(e, dict) and slug(str(e.get("name", ""))) != view.key
        ]
        entries.append(view.to_json())
        data["views"][self.owner] = sorted(entries, key=lambda e: slug(str(e.get("name", ""))))
        self._write(data)

    def delete(self, key: str) -> bool:
        data = self._read()
        entries = data["views"].get(self.owner) or []
        kept = [e for e in entries if isinstance(e, dict) and slug(str(e.get("name", ""))) != key]
        if len(kept) == len(entries):
            return False
        data["views"][self.owner] = kept
        self._write(data)
        return True
