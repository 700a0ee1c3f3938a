"""Consistent-hash ring: which management node owns a resource.

Every node keeps its own copy of the ring, built from the same membership (node UUIDs), so
every node computes the same owner for a resource UUID without asking anyone. Each node is
placed on the ring ``vnodes`` times; a key belongs to the first point clockwise from its hash.
Adding or removing a node therefore moves only the keys next to that node's points: about
1/N of them, all to (or from) that node.

The hash is BLAKE2b of the UTF-8 key cut to 64 bits, never Python's ``hash()``, which is
salted per process and would give every node a different ring.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

from zmn.api.errors import Unavailable

DEFAULT_VNODES = 200


def ring_hash(key: str) -> int:
    """A stable 64-bit position on the ring, the same in every process and on every node."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Node UUIDs on a ring with virtual nodes; ``owner(key)`` by bisection."""

    def __init__(self, nodes: Iterable[str] = (), *, vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        self.vnodes = vnodes
        self._nodes: set[str] = set()
        self._hashes: list[int] = []
        self._owners: list[str] = []
        for node in nodes:
            self._nodes.add(node)
        self._rebuild()

    def _rebuild(self) -> None:
        # Sorting (hash, node) pairs makes a hash collision between two nodes' points resolve
        # the same way on every node.
        points = sorted(
            (ring_hash(f"{node}#{i}"), node) for node in self._nodes for i in range(self.vnodes)
        )
        self._hashes = [h for h, _ in points]
        self._owners = [n for _, n in points]

    def add(self, node: str) -> bool:
        """Put a node on the ring; False if it was already there."""
        if node in self._nodes:
            return False
        self._nodes.add(node)
        self._rebuild()
        return True

    def remove(self, node: str) -> bool:
        """Take a node off the ring; False if it was not there."""
        if node not in self._nodes:
            return False
        self._nodes.discard(node)
        self._rebuild()
        return True

    @property
    def nodes(self) -> list[str]:
        return sorted(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def owner(self, key: str) -> str:
        """The node owning ``key`` (a resource UUID)."""
        if not self._hashes:
            raise Unavailable("no management node is on the ring", code="RING.EMPTY")
        index = bisect.bisect_right(self._hashes, ring_hash(key))
        return self._owners[index % len(self._owners)]
