"""Global configuration: typed settings in the database, declared by services.

A service declares ``GlobalConfigDef(category, name, default, type, ...)``; the node writes
missing rows at start, keeps values in memory, validates updates and publishes
``/globalconfig/change`` with the old and new value.

Loops that sleep on a setting (host pings, the reconciler, the reaper, heartbeats) sleep
through :meth:`GlobalConfigStore.wait_interval` or :meth:`GlobalConfigStore.sleep` (or
:meth:`GlobalConfigStore.watch` an event): a change of the value wakes them, so a new
interval takes effect at once instead of after the old sleep.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from zmn.api.errors import InvalidArgument, NotFound
from zmn.core.models import GlobalConfigVO

if TYPE_CHECKING:
    from zmn.core.db import Database


@dataclass(frozen=True)
class GlobalConfigDef:
    category: str
    name: str
    default: Any
    type: str = "string"  # string | int | float | bool
    description: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    validator: Callable[[Any], str | None] | None = None  # returns an error text or None

    @property
    def key(self) -> tuple[str, str]:
        return (self.category, self.name)

    def parse(self, text: str) -> Any:
        where = f"{self.category}/{self.name}"
        try:
            if self.type == "int":
                value: Any = int(text)
            elif self.type == "float":
                value = float(text)
                if not math.isfinite(value):  # nan would slip past min/max checks
                    raise ValueError(text)
            elif self.type == "bool":
                low = text.strip().lower()
                if low not in ("true", "false"):
                    raise ValueError(text)
                value = low == "true"
            else:
                value = text
        except ValueError:
            raise InvalidArgument(
                f"global config {where} takes a {self.type}, not {text!r}", field="value"
            ) from None
        if self.min is not None and value < self.min:
            raise InvalidArgument(f"global config {where} must be >= {self.min:g}", field="value")
        if self.max is not None and value > self.max:
            raise InvalidArgument(f"global config {where} must be <= {self.max:g}", field="value")
        if self.choices is not None and value not in self.choices:
            raise InvalidArgument(
                f"global config {where} must be one of {', '.join(self.choices)}", field="value"
            )
        if self.validator is not None:
            problem = self.validator(value)
            if problem:
                raise InvalidArgument(f"global config {where}: {problem}", field="value")
        return value

    def render(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


class GlobalConfigStore:
    """Declarations and cached values of every global config of the loaded services."""

    def __init__(self) -> None:
        self.defs: dict[tuple[str, str], GlobalConfigDef] = {}
        self.values: dict[tuple[str, str], Any] = {}
        self._watchers: dict[tuple[str, str], set[asyncio.Event]] = {}

    def declare(self, d: GlobalConfigDef) -> None:
        if d.key in self.defs:
            raise ValueError(f"global config {d.category}/{d.name} declared twice")
        self.defs[d.key] = d
        self.values[d.key] = d.default

    def definition(self, category: str, name: str) -> GlobalConfigDef:
        d = self.defs.get((category, name))
        if d is None:
            known = sorted(f"{c}/{n}" for c, n in self.defs if c == category) or sorted(
                {c for c, _ in self.defs}
            )
            raise NotFound(
                f"no global config {category}/{name} (known: {', '.join(known)})",
                code="GLOBAL_CONFIG.NOT_FOUND",
                field="name",
            )
        return d

    def get(self, category: str, name: str) -> Any:
        return self.values[(category, name)]

    def load(self, db: Database) -> None:
        """Insert missing declarations, refresh defaults and descriptions, read values.

        Nodes starting at once on a shared database may insert the same declaration: the one
        that loses the race reads again and finds the other's rows."""
        for attempt in range(3):
            try:
                self._load(db)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def _load(self, db: Database) -> None:
        with db.tx() as s:
            rows = {(r.category, r.name): r for r in s.scalars(select(GlobalConfigVO))}
            for key, d in self.defs.items():
                row = rows.get(key)
                if row is None:
                    s.add(
                        GlobalConfigVO(
                            category=d.category,
                            name=d.name,
                            value=d.render(d.default),
                            defaultValue=d.render(d.default),
                            type=d.type,
                            description=d.description,
                        )
                    )
                    self.values[key] = d.default
                    continue
                row.defaultValue = d.render(d.default)
                row.description = d.description
                row.type = d.type
                try:
                    self.values[key] = d.parse(row.value)
                except InvalidArgument:
                    self.values[key] = d.default

    def set_cached(self, category: str, name: str, text: str) -> None:
        d = self.defs.get((category, name))
        if d is not None:
            value = d.parse(text)
            changed = self.values.get(d.key) != value
            self.values[d.key] = value
            if changed:
                for event in list(self._watchers.get(d.key, ())):
                    event.set()

    # ----------------------------------------------------------------- waking on changes

    def watch(self, keys: Iterable[tuple[str, str]], event: asyncio.Event) -> None:
        """Set ``event`` whenever one of ``keys`` (category, name) changes value."""
        for key in keys:
            self._watchers.setdefault(key, set()).add(event)

    def unwatch(self, keys: Iterable[tuple[str, str]], event: asyncio.Event) -> None:
        for key in keys:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[key]

    async def sleep(self, seconds: float, *keys: tuple[str, str]) -> bool:
        """Sleep ``seconds``, less when one of ``keys`` changes; True when a change woke it."""
        event = asyncio.Event()
        self.watch(keys, event)
        waiter = asyncio.ensure_future(event.wait())
        try:
            # not asyncio.wait_for: on 3.11 it loses a cancellation that arrives as the event
            # is set (the loop then never stopped: a change followed at once by a stop)
            done, _ = await asyncio.wait({waiter}, timeout=max(0.0, seconds))
            return bool(done)
        finally:
            waiter.cancel()
            self.unwatch(keys, event)

    async def wait_interval(
        self, category: str, name: str, *, minimum: float = 0.0, when_zero: float | None = None
    ) -> None:
        """Sleep the interval the setting gives, from now. A change while sleeping re-times the
        sleep from the same start: a shorter interval that has already passed ends it at once,
        a longer one sleeps the difference. ``when_zero`` is slept while the value is 0 (a
        setting where 0 turns the loop off)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            interval = float(self.get(category, name))
            if interval == 0 and when_zero is not None:
                interval = when_zero
            remaining = start + max(minimum, interval) - loop.time()
            if remaining <= 0 or not await self.sleep(remaining, (category, name)):
                return
