"""The node's UUIDs are time-ordered (zmn/api/ids.py) and shortened by their random part."""

from __future__ import annotations

import time

from zmn.api.ids import new_uuid, short_id
from zmn.api.message import UUID_RE
from zmn.services.kvm.hostnet import nic_device


def test_a_new_uuid_is_version_7_with_the_clock_first() -> None:
    before = time.time_ns() // 1_000_000
    uuid = new_uuid()
    after = time.time_ns() // 1_000_000
    assert UUID_RE.match(uuid)
    assert uuid[12] == "7" and uuid[16] in "89ab"  # version 7, RFC 9562 variant
    assert before <= int(uuid[:12], 16) <= after


def test_uuids_made_later_sort_after_and_all_differ() -> None:
    first = [new_uuid() for _ in range(1000)]
    time.sleep(0.002)
    later = new_uuid()
    assert len(set(first)) == 1000
    assert all(u < later for u in first)


def test_a_short_id_is_the_random_end_of_a_time_ordered_uuid() -> None:
    made = [new_uuid() for _ in range(200)]  # within a few milliseconds: one clock prefix
    assert len({u[:8] for u in made}) <= 2
    assert len({short_id(u) for u in made}) == 200
    assert all(short_id(u) == u[-8:] for u in made)
    assert short_id(made[0], 12) == made[0][-12:]
    old = "3f2a9c1e" + "4" * 24  # a random (version 4) UUID: its first digits, as before
    assert short_id(old) == "3f2a9c1e"


def test_tap_devices_of_vms_made_together_differ_and_old_names_stay() -> None:
    a, b = new_uuid(), new_uuid()
    assert nic_device(a, 0) != nic_device(b, 0)
    assert len(nic_device(a, 12)) <= 15  # IFNAMSIZ - 1
    old = "0123abcd" + "4" * 24
    assert nic_device(old, 1) == "v0123abcd.1"
