"""Extension points: typed protocols that plugins implement and other services call.

A service that offers an extension point defines a ``Protocol``; a plugin registers an
object implementing it with ``node.extensions.add(Point, impl)``; the offering service calls
every implementation with ``node.extensions.all(Point)``, or the one for a type with
``node.extensions.first(Point, primary_storage_type="NFS")``. Removing the plugin removes the
implementation and nothing else.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class ExtensionRegistry:
    def __init__(self) -> None:
        self._impls: dict[type[Any], list[Any]] = {}

    def add(self, point: type[T], impl: T) -> None:
        self._impls.setdefault(point, []).append(impl)

    def all(self, point: type[T]) -> list[T]:
        return list(self._impls.get(point, []))

    def first(self, point: type[T], **match: object) -> T | None:
        """The first implementation of ``point`` whose attributes equal ``match`` (e.g.
        ``hypervisor_type="KVM"``), or None when no plugin registered one."""
        for impl in self._impls.get(point, []):
            if all(getattr(impl, key, None) == value for key, value in match.items()):
                return impl  # type: ignore[no-any-return]
        return None

    def describe(self) -> dict[str, list[str]]:
        return {p.__name__: [type(i).__name__ for i in impls] for p, impls in self._impls.items()}
