"""Resource UUIDs: how the node makes them and how they are shortened for people.

A UUID is 32 lowercase hex digits, as in ZStack. The node makes time-ordered ones (RFC 9562
version 7: 48 bits of Unix milliseconds, then 74 random bits), so the rows a create inserts
sit next to the rows the creates before it inserted in every UUID index: one B-tree page takes
the inserts of many creates, instead of each insert dirtying a random page of its own (which
every commit then writes to the WAL, and which at a million rows is seldom in the cache).

Their first digits are the clock, the same for everything made in the same minute, so a UUID
is shortened for people (and for the names of a host's devices) to its *last* digits when it
is time-ordered, and to its first ones otherwise (UUIDs made before, or given by a caller).
Secrets (session tokens) are not UUIDs from here: they are all random.
"""

from __future__ import annotations

import os
import time


def new_uuid() -> str:
    """A time-ordered (version 7) UUID as 32 lowercase hex digits."""
    b = bytearray(os.urandom(16))
    b[0:6] = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    b[6] = (b[6] & 0x0F) | 0x70  # version 7
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 9562 variant
    return b.hex()


def short_id(uuid: str, length: int = 8) -> str:
    """``length`` hex digits that tell ``uuid`` from others made at the same time: the last
    ones of a version-7 UUID (its first ones are the clock), the first ones of any other."""
    if len(uuid) == 32 and uuid[12] == "7":
        return uuid[-length:]
    return uuid[:length]
