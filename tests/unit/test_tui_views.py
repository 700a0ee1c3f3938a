"""Saved views (per endpoint and user, in the config dir) and keyset paging, with Pilot."""

from __future__ import annotations

import json
from pathlib import Path

from tui.app import ZtuiApp
from tui.screens.palette import CommandBar
from tui.screens.picker import Picker
from tui.screens.prompt import PromptScreen
from tui.screens.resources import ResourceScreen
from tui.testing import FakeNode, screen_text, wait_until
from tui.views import View, ViewStore, views_file
from tui.widgets.table import ResourceTable


def test_views_file_follows_xdg_config_home(tmp_path: Path) -> None:
    assert views_file({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "zstack/ztui/views.json"


def test_store_keeps_views_per_endpoint_and_user(tmp_path: Path) -> None:
    path = tmp_path / "views.json"
    alice = ViewStore(path, "unix:/a.sock acct-alice")
    bob = ViewStore(path, "unix:/a.sock acct-bob")
    other_node = ViewStore(path, "tcp://b:5000 acct-alice")
    alice.save(View("Running VMs on pub", "VmInstance", filter="state=Running"))
    bob.save(View("stopped", "VmInstance", filter="state=Stopped", sort_by="name"))
    assert [v.key for v in alice.saved()] == ["running-vms-on-pub"]
    assert [v.key for v in bob.saved()] == ["stopped"]
    assert other_node.saved() == []
    # saving under the same name replaces; the built-in mn view is always offered
    alice.save(View("running vms on pub", "VmInstance", filter="state=Running name~=web"))
    assert [v.filter for v in alice.saved()] == ["state=Running name~=web"]
    assert [v.key for v in alice.all()] == ["running-vms-on-pub", "mn"]
    assert alice.delete("running-vms-on-pub") and not alice.delete("running-vms-on-pub")
    assert [v.key for v in bob.saved()] == ["stopped"]  # untouched


def test_store_survives_a_bad_file_and_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "views.json"
    path.write_text("{not json")
    store = ViewStore(path, "x")
    assert store.saved() == []
    path.write_text(json.dumps({"views": {"x": [{"name": "ok", "type": "Zone"}, {"bad": 1}, 3]}}))
    assert [v.name for v in store.saved()] == ["ok"]
    store.save(View("two", "Host"))
    assert [v.name for v in store.saved()] == ["ok", "two"]


def make_app(node: FakeNode, tmp_path: Path) -> ZtuiApp:
    return ZtuiApp(
        "fake:",
        client_factory=node.client,
        stats_interval=100,
        backoff=(0.05, 0.2),
        views_path=tmp_path / "views.json",
    )


async def test_save_a_view_then_open_and_delete_it_from_the_palette(tmp_path: Path) -> None:
    app = make_app(FakeNode.sample(), tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.data.status.live)
        await pilot.press("colon", *"host", "enter")
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        screen = app.screen
        await pilot.press("slash", *"status=Connected", "enter")
        assert await wait_until(pilot, lambda: screen.total == 4)
        await pilot.press("S")  # name, descending
        await pilot.press("c")  # hide the cluster column
        assert isinstance(app.screen, Picker)
        index = [v for _l, v in app.screen.items].index("clusterUuid")
        await pilot.press(*["down"] * index, "enter")
        assert "clusterUuid" not in screen.columns
        await pilot.press("v")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"Connected hosts", "enter")
        await pilot.pause(0.1)
        saved = json.loads((tmp_path / "views.json").read_text())["views"]
        assert list(saved) == ["fake: peer"]
        (view,) = saved["fake: peer"]
        assert view["filter"] == "status=Connected" and view["descending"] is True
        assert view["sort_by"] == "name" and "clusterUuid" not in view["columns"]

        await pilot.press("colon", *"overview", "enter")
        await pilot.press("colon", *"conn")
        assert isinstance(app.screen, CommandBar)
        assert ":connected-hosts" in screen_text(app) and "saved view" in screen_text(app)
        await pilot.press("enter")
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        reopened = app.screen
        assert reopened.conditions == ["status=Connected"] and reopened.total == 4
        assert [r["name"] for r in reopened.rows] == ["h221", "h211", "h121", "h111"]
        assert "clusterUuid" not in reopened.query_one(ResourceTable).columns_shown
        assert "@connected-hosts" in screen_text(app)

        await pilot.press("colon", *"connected")
        await pilot.press("ctrl+d")
        await pilot.pause(0.1)
        assert ":connected-hosts" not in screen_text(app)
        assert json.loads((tmp_path / "views.json").read_text())["views"]["fake: peer"] == []


async def test_keyset_paging_uses_after_and_next(tmp_path: Path) -> None:
    node = FakeNode(keyset=True)
    for i in range(50):
        node.add("Zone", f"zone{i:03d}", state="Enabled")
    app = make_app(node, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.data.status.live)
        await pilot.press("colon", *"zone", "enter")
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        screen = app.screen
        assert screen.page_size == 20  # a screenful at 80x24
        await pilot.press("right_square_bracket")
        assert await wait_until(pilot, lambda: screen.rows[0]["name"] == "zone020")
        await pilot.press("right_square_bracket")
        assert await wait_until(pilot, lambda: screen.rows[0]["name"] == "zone040")
        assert len(screen.rows) == 10 and screen.next_cursor is None
        await pilot.press("right_square_bracket")  # the last page: nowhere to go
        await pilot.press("left_square_bracket")
        assert await wait_until(pilot, lambda: screen.rows[0]["name"] == "zone020")
        assert "page 2/3" in screen_text(app)
        pages = [a for api, a in node.calls if api == "QueryZone" and "limit" in a]
        assert all("start" not in a for a in pages)
        assert sum(1 for a in pages if a.get("after")) >= 3
