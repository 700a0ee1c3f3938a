"""``python -m bench`` rewrites docs/benchmarks.md: what it must carry over from the old file
(bench/report.py ``merge``): the hand-written blocks of each section and the sections of the
families the run did not measure."""

from __future__ import annotations

from bench.report import merge

OLD = """# Benchmarks

Old header.

## Machine

| CPU | old |

## VM create

| old vm table |

<!-- kept -->
Session 9: 1.31 ms on its machine.
<!-- /kept -->

Some text outside the markers, from the old generator.

## kvm

| old kvm table |

<!-- kept -->
Session 10: 2.3% of libvirt's time.
<!-- /kept -->

## Findings

- old finding
"""

NEW = """# Benchmarks

New header.

## Machine

| CPU | new |

## VM create

| new vm table |

- `create_node_cpu`: new note

## Stress

| new stress table |

## Findings

- new finding
"""


def test_new_figures_replace_old_ones_and_kept_blocks_follow_them() -> None:
    merged = merge(OLD, NEW)
    assert merged.startswith("# Benchmarks\n\nNew header.\n")
    assert "| CPU | new |" in merged and "| CPU | old |" not in merged
    vm = merged.split("## VM create\n", 1)[1].split("\n## ", 1)[0]
    assert vm.index("| new vm table |") < vm.index("- `create_node_cpu`: new note")
    assert vm.index("- `create_node_cpu`: new note") < vm.index("Session 9: 1.31 ms")
    assert "| old vm table |" not in merged
    assert "Some text outside the markers" not in merged  # only kept blocks survive
    assert "- new finding" in merged and "- old finding" not in merged


def test_sections_the_run_did_not_write_stay_whole_in_their_place() -> None:
    merged = merge(OLD, NEW)
    headings = [line for line in merged.splitlines() if line.startswith("## ")]
    assert headings == ["## Machine", "## VM create", "## Stress", "## kvm", "## Findings"]
    kvm = merged.split("## kvm\n", 1)[1].split("\n## ", 1)[0]
    assert "| old kvm table |" in kvm and "Session 10: 2.3%" in kvm


def test_merging_twice_changes_nothing_more() -> None:
    once = merge(OLD, NEW)
    assert merge(once, NEW) == once
    assert once.count("Session 9: 1.31 ms") == 1
