"""The ``CheckConsistency`` extension point: invariants every service contributes.

A service registers an object with ``check_consistency(session) -> list[Violation]`` through
``node.extensions.add(ConsistencyCheck, impl)``; the admin API ``CheckConsistency`` runs them
all in one read transaction and returns ``{"violations": [...]}``, empty when all hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypedDict

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class Violation(TypedDict, total=False):
    check: str  # short name of the invariant, e.g. "ip-owned-by-nic"
    resourceType: str
    uuid: str
    message: str
    expected: Any
    actual: Any
    inFlight: bool  # an operation in flight holds the resource: reported, never repaired


class ConsistencyCheck(Protocol):
    def check_consistency(self, session: Session) -> list[Violation]: ...
