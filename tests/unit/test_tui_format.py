"""Value formatting: sizes, ages, bars, sparklines, event lines."""

from __future__ import annotations

from tui.format import age, bar, cell, event_summary, human_bytes, sparkline, state_style


def test_human_bytes() -> None:
    assert human_bytes(0) == "0B"
    assert human_bytes(64 * 2**30) == "64.0G"
    assert human_bytes(256 * 2**30) == "256G"
    assert human_bytes(1536) == "1.5K"


def test_age_is_relative_like_k9s() -> None:
    assert age("2025-01-01T00:00:00.000", now=1735689600 + 42) == "42s"
    assert age("2025-01-01T00:00:00.000", now=1735689600 + 3 * 3600 + 5) == "3h"
    assert age("not a date") == "not a date"


def test_cells_shorten_uuids_when_narrow_and_humanise_sizes() -> None:
    uuid = "0123456789abcdef0123456789abcdef"
    assert str(cell("uuid", uuid, wide=False)) == "01234567"
    assert str(cell("uuid", uuid, wide=True)) == uuid
    assert str(cell("totalMemoryCapacity", 2**30)) == "1.0G"
    assert str(cell("totalCpuCapacity", 32)) == "32"
    assert cell("state", "Disconnected").style == state_style("Disconnected") == "bold red"
    assert str(cell("createDate", None)) == "-"


def test_bar_and_sparkline() -> None:
    assert str(bar(6, 10, 10)) == "██████░░░░  60%"
    assert str(bar(0, 0, 4)) == "░░░░   0%"
    assert sparkline([0, 1, 2, 4], 10) == "▁▂▄█"
    assert sparkline([5, 6, 7], 2) == "▇█"
    assert sparkline([], 5) == ""


def test_event_summary_names_the_change() -> None:
    frame = {
        "path": "/host/state/change",
        "time": 0,
        "data": {
            "inventory": {"uuid": "u", "name": "h1"},
            "oldState": "Enabled",
            "newState": "Disabled",
        },
    }
    assert str(event_summary(frame)).endswith("/host/state/change h1 Enabled→Disabled")
