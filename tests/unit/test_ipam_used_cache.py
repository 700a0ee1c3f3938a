"""This node's copy of an L3's used addresses keeps its scan start across releases."""

from __future__ import annotations

import time
from types import SimpleNamespace

from zmn.services.network.ipam import UsedIpCache, _lowest_free, _UsedAddresses

A = SimpleNamespace(uuid="a", startIp="10.0.0.10", endIp="10.0.0.20")  # 167772170..180
B = SimpleNamespace(uuid="b", startIp="10.0.1.10", endIp="10.0.1.20")  # 167772426..436
BASE_A, BASE_B = 167772170, 167772426


def _cache(used: set[int], hint: int | None) -> UsedIpCache:
    cache = UsedIpCache()
    cache.l3s["l3"] = _UsedAddresses(
        time.monotonic(),
        ("a", "b"),
        used,
        hint,
        bounds=((BASE_A, BASE_A + 10), (BASE_B, BASE_B + 10)),
    )
    return cache


def test_a_release_before_the_hint_in_its_range_moves_the_scan_start_back() -> None:
    used = set(range(BASE_A, BASE_A + 6))
    cache = _cache(used, BASE_A + 5)
    cache.released("l3", BASE_A + 2)
    entry = cache.l3s["l3"]
    assert entry.hint == BASE_A + 2
    assert _lowest_free([A, B], entry.used, entry.hint) == (A, BASE_A + 2)


def test_a_release_after_the_hint_or_in_another_range_keeps_it() -> None:
    used = set(range(BASE_A, BASE_A + 11)) | {BASE_B, BASE_B + 1}
    cache = _cache(used, BASE_B + 1)
    cache.released("l3", BASE_B + 5)  # after the hint: nothing before it was freed
    assert cache.l3s["l3"].hint == BASE_B + 1
    cache.released("l3", BASE_A + 3)  # another range: scanned from its start anyway
    entry = cache.l3s["l3"]
    assert entry.hint == BASE_B + 1
    # the lowest free address is still found: the earlier range is scanned in full
    assert _lowest_free([A, B], entry.used, entry.hint) == (A, BASE_A + 3)


def test_the_hint_found_after_releases_matches_a_scan_without_it() -> None:
    used = set(range(BASE_A, BASE_A + 11)) | set(range(BASE_B, BASE_B + 8))
    cache = _cache(set(used), BASE_B + 7)
    for value in (BASE_B + 6, BASE_B + 3, BASE_A + 9, BASE_B + 4):
        cache.released("l3", value)
        used.discard(value)
        entry = cache.l3s["l3"]
        assert _lowest_free([A, B], entry.used, entry.hint) == _lowest_free([A, B], used, None)
