"""Regression: a float global config accepted ``nan`` even with min/max bounds (every
comparison with nan is false, so both bound checks passed), and ``inf`` when unbounded.
GlobalConfigDef.parse now refuses non-finite floats as not-a-float.
"""

from __future__ import annotations

import pytest

from zmn.api.errors import InvalidArgument
from zmn.core.globalconfig import GlobalConfigDef


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_floats_are_refused(text: str) -> None:
    bounded = GlobalConfigDef("host", "cpu.overProvisioning", 1.0, "float", min=0.1, max=20)
    unbounded = GlobalConfigDef("host", "ratio", 1.0, "float")
    for d in (bounded, unbounded):
        with pytest.raises(InvalidArgument, match="takes a float"):
            d.parse(text)
    assert unbounded.parse("1e300") == 1e300
