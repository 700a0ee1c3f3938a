"""The fuzzing suite runs at least 10,000 generated cases in CI (issue 8), spread over the
wire decoder, malformed frames on a live socket, the query parser and compiler, the API
argument decoder and the CLI parser. This adds up each fuzz test's ``max_examples`` so that
trimming one for speed cannot silently drop the total below the promise.
"""

from __future__ import annotations

import importlib
from typing import Any

FUZZ_MODULES = [
    "tests.unit.test_fuzz_wire",
    "tests.unit.test_fuzz_args",
    "tests.unit.test_fuzz_query",
    "tests.unit.test_fuzz_cli",
    "tests.integration.test_security_frames",
    "tests.security.test_ranges_fuzz",
]
MINIMUM = 10_000


def examples_per_test() -> dict[str, int]:
    out = {}
    for name in FUZZ_MODULES:
        module = importlib.import_module(name)
        for attr, fn in vars(module).items():
            hypothesis: Any = getattr(fn, "hypothesis", None)
            if attr.startswith("test_") and hypothesis is not None:
                inner = getattr(fn, "_hypothesis_internal_use_settings", None)
                assert inner is not None, f"{name}.{attr} has no explicit settings"
                out[f"{name}.{attr}"] = int(inner.max_examples)
    return out


def test_the_fuzz_suite_runs_at_least_ten_thousand_cases() -> None:
    budget = examples_per_test()
    assert {n.rsplit(".", 1)[0] for n in budget} == set(FUZZ_MODULES)
    assert sum(budget.values()) >= MINIMUM, budget
