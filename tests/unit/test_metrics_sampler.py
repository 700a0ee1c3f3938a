"""The simulator's samples are taken at the ticks of its interval, at most a window of them."""

from __future__ import annotations

from zmn.services.metrics.sampler import ticks


def test_ticks_are_the_multiples_of_the_interval_since_the_last_sample() -> None:
    assert ticks(100.0, 131.5, 10.0, 60) == [110.0, 120.0, 130.0]
    assert ticks(110.0, 119.9, 10.0, 60) == []  # nothing due before the next multiple
    assert ticks(105.0, 110.0, 10.0, 60) == [110.0]  # a tick at `now` is due


def test_a_long_gap_gives_the_last_window_of_ticks_only() -> None:
    assert ticks(0.0, 1000.0, 1.0, 3) == [998.0, 999.0, 1000.0]
