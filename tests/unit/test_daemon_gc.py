"""The serving node's garbage collector settings (zmn.daemon.settle_gc)."""

from __future__ import annotations

import json
import subprocess
import sys

# run in a child: freezing and thresholds are process-wide and would change this test run
_PROBE = """
import gc, json
from zmn.daemon import GC_THRESHOLDS, settle_gc
before = gc.get_freeze_count()
settle_gc()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                  "thresholds": list(gc.get_threshold()), "wanted": list(GC_THRESHOLDS)}))
"""


def test_settle_gc_freezes_the_start_up_objects_and_keeps_the_default_thresholds() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(done.stdout)
    assert seen["before"] == 0
    assert seen["frozen"] > 10_000  # the imported modules' objects at least
    # higher thresholds let an anonymous flood's cyclic garbage grow the RSS by hundreds of
    # MiB (tests/security/test_limits_flood.py)
    assert seen["thresholds"] == seen["wanted"] == [700, 10, 10]
