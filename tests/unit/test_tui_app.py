"""Pilot tests of the dashboard against the fake node (deterministic data, VM types included)."""

from __future__ import annotations

from tui.app import ZtuiApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.overview import OverviewScreen
from tui.screens.picker import Picker
from tui.screens.resources import ResourceScreen
from tui.testing import FakeNode, screen_text, wait_until
from tui.widgets.table import ResourceTable


def make_app(node: FakeNode, **kw) -> ZtuiApp:
    kw.setdefault("stats_interval", 0.2)
    kw.setdefault("backoff", (0.05, 0.2))
    return ZtuiApp("fake:", client_factory=node.client, **kw)


async def open_view(pilot, app: ZtuiApp, command: str) -> ResourceScreen:
    await pilot.press("colon", *command, "enter")
    assert await wait_until(
        pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
    )
    return app.screen  # type: ignore[return-value]


def names(screen: ResourceScreen) -> list[str]:
    return [r["name"] for r in screen.rows]


async def test_overview_counts_capacity_and_stats() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(100, 40)) as pilot:
        assert await wait_until(
            pilot, lambda: "8 Running" in screen_text(app) and "api/s" in screen_text(app)
        )
        text = screen_text(app)
        assert "4 Connected 4 Disconnected" in text
        assert "1 Disabled 1 Enabled" in text
        assert "48/128" in text  # z1 cpu: 2 clusters x 2 hosts x (8 or 16 used of 32)
        assert "12.5" in text  # api/s from GetManagementNodeStats


async def test_palette_aliases_and_enter_on_overview_row() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "vm")
        assert screen.info.name == "VmInstance" and len(screen.rows) == 8
        await pilot.press("colon", *"overview", "enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        counts = app.screen.query_one("#counts")
        counts.focus()
        await pilot.press("down", "enter")  # second row: cluster
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        assert app.screen.info.name == "Cluster"


async def test_unknown_view_keeps_the_palette_open() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.data.status.live)
        await pilot.press("colon", *"zzzz", "enter")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "CommandBar"
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)


async def test_filter_completion_sort_and_escape() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        await pilot.press("slash", *"statu")
        bar = screen.query_one("#filter")
        assert await wait_until(pilot, lambda: bar._suggestion == "status")
        await pilot.press("right", *"=Dis")
        assert await wait_until(pilot, lambda: bar._suggestion == "status=Disconnected")
        await pilot.press("right", "enter")
        assert await wait_until(pilot, lambda: screen.total == 4)
        assert screen.conditions == ["status=Disconnected"]
        assert "filter status=Disconnected" in screen_text(app)
        await pilot.press("S")  # reverse the name sort
        assert await wait_until(pilot, lambda: names(screen)[0] == "h222")
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: screen.total == 8 and not screen.conditions)
        assert isinstance(app.screen, ResourceScreen)
        await pilot.press("escape")  # nothing left to clear: back to the overview
        assert isinstance(app.screen, OverviewScreen)


async def test_bare_word_filters_names_and_bad_field_shows_error() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        await pilot.press("slash", *"h12", "enter")
        assert await wait_until(pilot, lambda: screen.total == 2)
        await pilot.press("slash", "ctrl+u", *"colour=red", "enter")
        assert await wait_until(pilot, lambda: bool(screen.error))
        assert "no field 'colour'" in screen_text(app)


async def test_drill_down_zone_to_clusters_and_back() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app, "zone")
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, Picker))
        await pilot.press("enter")  # first choice: clusters of z1
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        child = app.screen
        assert child.info.name == "Cluster" and names(child) == ["c11", "c12"]
        assert "z1" in screen_text(app)
        await pilot.press("escape")
        assert app.screen.info.name == "Zone"


async def test_host_drills_to_vms() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app, "host")
        await pilot.press("enter", "enter")
        assert await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, ResourceScreen)
                and app.screen.loaded
                and app.screen.info.name == "VmInstance"
            ),
        )
        assert names(app.screen) == ["vm111"]


async def test_detail_pane_shows_every_field_and_json() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(160, 48)) as pilot:
        await open_view(pilot, app, "host")
        await pilot.press("d")
        await pilot.pause(0.1)
        text = screen_text(app)
        for field in (
            "totalMemoryCapacity",
            "availableCpuCapacity",
            "lastOpDate",
            '"name": "h111"',  # the JSON
        ):
            assert field in text
        assert "(64.0G)" in text and "(c11)" in text


async def test_confirmation_gates_an_action() -> None:
    node = FakeNode.sample()
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "zone")
        await pilot.press("a")
        assert isinstance(app.screen, Picker)
        await pilot.press("enter")  # disable
        assert isinstance(app.screen, ConfirmScreen)
        assert "ChangeZoneState stateEvent=disable" in screen_text(app)
        await pilot.press("enter")  # the focused button is Cancel
        await pilot.pause(0.1)
        assert not [c for c in node.calls if c[0] == "ChangeZoneState"]
        await pilot.press("a", "enter", "y")
        assert await wait_until(pilot, lambda: screen.rows[0]["state"] == "Disabled")
        assert (
            "ChangeZoneState",
            {"uuid": screen.rows[0]["uuid"], "stateEvent": "disable"},
        ) in node.calls


async def test_marks_run_a_bulk_action_on_every_marked_row() -> None:
    node = FakeNode.sample()
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "vm")
        await pilot.press("space", "space", "space")
        assert len(screen.marks) == 3
        assert "3 marked" in screen_text(app)
        await pilot.press("a")
        picker = app.screen
        assert isinstance(picker, Picker)
        stop = next(i for i, (_l, a) in enumerate(picker.items) if a.label == "stop")
        await pilot.press(*["down"] * stop, "enter")
        assert "3 vms" in screen_text(app)
        await pilot.press("y")
        assert await wait_until(
            pilot, lambda: [r["state"] for r in screen.rows[:4]] == ["Stopped"] * 3 + ["Running"]
        )
        assert not screen.marks


async def test_read_only_hides_actions() -> None:
    node = FakeNode.sample()
    app = make_app(node, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        assert "read-only" in screen_text(app)
        assert "Actions" not in screen_text(app)
        assert "a" not in screen.active_bindings
        await pilot.press("a")
        await pilot.pause(0.1)
        assert app.screen is screen
        assert all(not c[0].startswith(("Change", "Reconnect")) for c in node.calls)


async def test_rows_update_in_place_and_creations_appear_live() -> None:
    node = FakeNode.sample()
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "zone")
        node.create("Zone", "z0-new", state="Enabled")
        assert await wait_until(pilot, lambda: "z0-new" in names(screen), timeout=1.0)
        uuid = screen.rows[1]["uuid"]
        await node.clients[0].call("ChangeZoneState", {"uuid": uuid, "stateEvent": "disable"})
        table = screen.query_one(ResourceTable)
        assert await wait_until(
            pilot, lambda: str(table.get_cell(uuid, "state")) == "Disabled", timeout=1.0
        )


async def test_paging_through_many_rows() -> None:
    node = FakeNode()
    for i in range(250):
        node.add("Zone", f"zone{i:03d}", state="Enabled")
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "zone")
        page = screen.page_size  # a screenful: the rows the table has room for
        table = screen.query_one(ResourceTable)
        assert page == table.size.height - 1 == 20  # 24 lines less header, info, footer, titles
        assert len(screen.rows) == page and screen.total == 250
        assert all(
            args.get("limit") == page
            for api, args in node.calls
            if api == "QueryZone" and "replyWithCount" in args
        )
        await pilot.press("right_square_bracket")
        assert await wait_until(
            pilot, lambda: screen.start == page and names(screen)[0] == f"zone{page:03d}"
        )
        table.move_cursor(row=page - 1)
        await pilot.press("down")  # past the last row: the next page, cursor on top
        assert await wait_until(pilot, lambda: screen.start == 2 * page)
        assert names(screen)[0] == f"zone{2 * page:03d}"
        assert table.cursor_row == 0
        await pilot.press("up")  # before the first row: the previous page, cursor at the bottom
        assert await wait_until(pilot, lambda: screen.start == page)
        assert table.cursor_row == page - 1
        assert "page 2/13" in screen_text(app)
        for _ in range(12):
            await pilot.press("right_square_bracket")
        assert await wait_until(pilot, lambda: screen.start == 240 and len(screen.rows) == 10)


async def test_a_taller_terminal_gets_longer_pages() -> None:
    node = FakeNode()
    for i in range(250):
        node.add("Zone", f"zone{i:03d}", state="Enabled")
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "zone")
        assert len(screen.rows) == 20
        await pilot.resize_terminal(80, 44)
        assert await wait_until(pilot, lambda: len(screen.rows) == 40)
        assert screen.query_one(ResourceTable).size.height == 41
        assert "1-40 of 250" in screen_text(app)


async def test_sort_picker_sends_sort_by() -> None:
    node = FakeNode.sample()
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        await pilot.press("s")
        picker = app.screen
        assert isinstance(picker, Picker)
        index = [v for _l, v in picker.items].index("status")
        await pilot.press(*["down"] * index, "enter")
        assert await wait_until(
            pilot, lambda: screen.sort_by == "status" and screen.rows[0]["status"] == "Connected"
        )
        assert any(args.get("sortBy") == "status" for api, args in node.calls if api == "QueryHost")


async def test_help_is_generated_from_bindings() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(100, 60)) as pilot:
        await open_view(pilot, app, "host")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for line in ("Filter", "Actions", "Detail", ":vm", "Mark"):
            assert line in text
        await pilot.press("escape")
        assert isinstance(app.screen, ResourceScreen)


async def test_stale_header_and_reconnect() -> None:
    node = FakeNode.sample()
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "zone")
        node.drop_connections()
        assert await wait_until(pilot, lambda: "stale since" in screen_text(app))
        assert screen.rows  # the last data stays on screen
        node.up = True
        assert await wait_until(pilot, lambda: "● live" in screen_text(app))
        node.create("Zone", "after-reconnect", state="Enabled")
        assert await wait_until(pilot, lambda: "after-reconnect" in names(screen))


async def test_keys_typed_in_one_burst_reach_the_palette_and_the_filter() -> None:
    """tmux send-keys and fast typists deliver ':host⏎' or '/state=…' before focus moves."""
    from textual import events

    app = make_app(FakeNode.sample(), stats_interval=100)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.data.status.live)

        def burst(text: str) -> None:
            for ch in text:
                key = {":": "colon", "/": "slash", "=": "equals_sign", "\r": "enter"}.get(ch, ch)
                app._driver.send_message(events.Key(key, ch))

        burst(":host\r")
        assert await wait_until(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
        )
        assert app.screen.info.name == "Host"
        burst("/status=Connected\r")
        assert await wait_until(pilot, lambda: app.screen.conditions == ["status=Connected"])
        assert await wait_until(pilot, lambda: app.screen.total == 4)


async def test_mouse_click_on_a_header_sorts_and_on_a_row_selects() -> None:
    app = make_app(FakeNode.sample(), stats_interval=100)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        table = screen.query_one(ResourceTable)
        x = 0
        for key, column in table.columns.items():
            if key.value == "status":
                break
            x += column.get_render_width(table)
        await pilot.click(ResourceTable, offset=(x + 2, 0))
        assert await wait_until(pilot, lambda: screen.sort_by == "status" and not screen.descending)
        await pilot.click(ResourceTable, offset=(x + 2, 0))
        assert await wait_until(pilot, lambda: screen.descending)
        assert screen.rows[0]["status"] == "Disconnected"
        await pilot.click(ResourceTable, offset=(8, 3))  # the third data row
        assert table.cursor_row == 2
