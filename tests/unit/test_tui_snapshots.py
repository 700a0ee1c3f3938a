"""Snapshots of a few canonical screens at 80x24, as plain text, against the fake node.

A snapshot is what ``tmux capture-pane -p`` shows. To accept a deliberate change, run with
``ZTUI_UPDATE_SNAPSHOTS=1`` and review the diff of ``tests/snapshots/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tui.app import ZtuiApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.resources import ResourceScreen
from tui.testing import FakeNode, screen_text, wait_until

SNAPSHOTS = Path(__file__).parent.parent / "snapshots"
UPDATE = os.environ.get("ZTUI_UPDATE_SNAPSHOTS") == "1"


def check(name: str, text: str) -> None:
    path = SNAPSHOTS / f"tui_{name}.txt"
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        if not UPDATE:
            pytest.fail(
                f"snapshot {path.name} was missing and has been written; review it and re-run"
            )
        return
    expected = path.read_text().rstrip("\n")
    assert text == expected, f"{path.name} differs (ZTUI_UPDATE_SNAPSHOTS=1 accepts the change)"


def make_app() -> ZtuiApp:
    return ZtuiApp("fake:", client_factory=FakeNode.sample().client, stats_interval=3600)


async def test_snapshot_overview() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(
            pilot, lambda: "48/128" in screen_text(app) and "8 Running" in screen_text(app)
        )
        for _ in range(3):
            await app.poll_stats().wait()
        await pilot.pause(0.2)
        check("overview_80x24", screen_text(app))


async def test_snapshot_overview_wide() -> None:
    """At 140x40 the panels keep their boxes and sit side by side."""
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        assert await wait_until(
            pilot,
            lambda: all(t in screen_text(app) for t in ("48/128", "8 Running", "fake 0.0.0")),
        )
        for _ in range(3):
            await app.poll_stats().wait()
        await pilot.pause(0.2)
        check("overview_140x40", screen_text(app))


async def test_snapshot_host_view_with_detail() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.data.status.live)
        await pilot.press("colon", *"host", "enter")
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        await pilot.press("down", "space", "d")
        await pilot.pause(0.2)
        check("host_detail_80x24", screen_text(app))


async def test_snapshot_confirm_modal() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.data.status.live)
        await pilot.press("colon", *"host", "enter")
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        await pilot.press("space", "space", "a", "down", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.pause(0.2)
        check("confirm_80x24", screen_text(app))
