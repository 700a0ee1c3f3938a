"""``in_slices``: the one way a long list of values becomes bounded ``IN (...)`` lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zmn.core.db import IN_LIST, in_slices


@given(st.lists(st.integers(), max_size=1_200), st.integers(min_value=1, max_value=600))
def test_slices_keep_every_value_in_order_and_stay_within_the_bound(
    values: list[int], size: int
) -> None:
    parts = list(in_slices(values, size))
    assert [v for part in parts for v in part] == values
    assert all(0 < len(part) <= size for part in parts)
    assert len(parts) == -(-len(values) // size)  # as few as the bound allows


def test_the_default_bound_is_the_projects_in_list_size() -> None:
    parts = list(in_slices(list(range(2 * IN_LIST + 1))))
    assert [len(p) for p in parts] == [IN_LIST, IN_LIST, 1]
    assert list(in_slices([])) == []
