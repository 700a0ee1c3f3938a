"""Dashboard rough edges: Esc and the detail pane, actions by state, failure messages,
g/G/Home/End, nested detail rows, every overview panel at 80x24."""

from __future__ import annotations

from tests.unit.test_tui_app import make_app, open_view
from tui.catalogue import Action
from tui.screens.menus import NOTE_WIDTH, outcome
from tui.screens.picker import Picker
from tui.testing import FakeNode, screen_text, wait_until
from tui.widgets.table import ResourceTable
from zmn.api.errors import Conflict


async def test_escape_closes_the_detail_pane_and_keeps_filter_and_cursor() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_view(pilot, app, "host")
        await pilot.press("slash", *"status=Connected", "enter")
        assert await wait_until(pilot, lambda: len(screen.rows) == 4)
        table = screen.query_one(ResourceTable)
        await pilot.press("down", "down", "d")
        await pilot.pause(0.1)
        assert screen.has_class("-detail") and table.cursor_row == 2
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not screen.has_class("-detail")
        assert screen.conditions == ["status=Connected"] and len(screen.rows) == 4
        assert table.cursor_row == 2
        await pilot.press("escape")  # then Esc clears the filter, as before
        assert await wait_until(pilot, lambda: len(screen.rows) == 8)


async def test_actions_menu_offers_what_the_states_allow_once_each() -> None:
    node = FakeNode.sample()
    app = make_app(node)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_view(pilot, app, "vm")
        await pilot.press("a")
        assert await wait_until(pilot, lambda: isinstance(app.screen, Picker))
        labels = [a.label for _l, a in app.screen.items]
        assert labels == ["stop", "destroy"]  # all Running: no start
        await pilot.press("escape")
        first = screen.rows[0]["uuid"]
        node.tables["VmInstance"][first]["state"] = "Stopped"
        await pilot.press("r")
        assert await wait_until(pilot, lambda: screen.rows[0]["state"] == "Stopped")
        await pilot.press("space", "space", "a")  # one Stopped and one Running marked
        assert await wait_until(pilot, lambda: isinstance(app.screen, Picker))
        items = app.screen.items
        assert [a.label for _l, a in items] == ["start", "stop", "destroy"]
        assert [str(label).endswith("of 2)") for label, _a in items] == [True, True, False]
        assert "(1 of 2)" in str(items[0][0])
        await pilot.press("enter")  # start: only the Stopped one is asked and called
        await pilot.press("y")
        assert await wait_until(
            pilot, lambda: any(api == "StartVmInstance" for api, _ in node.calls)
        )
        started = [args["uuid"] for api, args in node.calls if api == "StartVmInstance"]
        assert started == [first]


async def test_zone_offers_only_the_event_that_changes_its_state() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_view(pilot, app, "zone")
        enabled = next(i for i, r in enumerate(screen.rows) if r["state"] == "Enabled")
        screen.query_one(ResourceTable).move_cursor(row=enabled)
        await pilot.press("a")
        assert await wait_until(pilot, lambda: isinstance(app.screen, Picker))
        assert [a.label for _l, a in app.screen.items] == ["disable"]


def test_failure_notes_name_resources_and_fit_80_columns() -> None:
    web = "a" * 32
    host = "b" * 32
    names = {"VmInstance": {web: "web1"}, "Host": {host: "kvm-host-7"}}
    err = Conflict(
        f"VM {web} cannot stop on host {host}: the host is in Maintenance and refuses"
        " every operation until an operator takes it out of maintenance",
        code="VM.STATE_NOT_ALLOWED",
    )
    action = Action("StopVmInstance", "stop")
    others = [("c" * 32, Conflict("busy", code="VM.BUSY")) for _ in range(4)]
    message, failed = outcome(action, [(web, err), ("d" * 32, None), *others], names)
    lines = message.splitlines()
    assert failed and lines[0] == "stop: 1 done, 5 failed"
    assert lines[1].startswith("web1: VM web1 cannot stop on host kvm-host-7:")
    assert lines[1].endswith("…")  # cut, not wrapped
    assert lines[2] == "cccccccc…: busy (VM.BUSY)"  # unknown: a short UUID, never 32 hex
    assert lines[-1] == "and 2 more"
    assert all(len(line) <= NOTE_WIDTH for line in lines)
    assert "a" * 32 not in message and "b" * 32 not in message


async def test_g_and_shift_g_home_and_end_move_to_the_first_and_last_row() -> None:
    app = make_app(FakeNode.sample())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_view(pilot, app, "host")
        table = screen.query_one(ResourceTable)
        await pilot.press("G")
        assert table.cursor_row == 7
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("end")
        assert table.cursor_row == 7
        await pilot.press("home")
        assert table.cursor_row == 0


async def test_detail_shows_nested_data_as_rows() -> None:
    node = FakeNode.sample()
    vm = next(iter(node.tables["VmInstance"].values()))
    l3 = vm["hostUuid"]  # a UUID whose name the view knows (its host column): shown beside it
    vm["vmNics"] = [
        {"uuid": "e" * 32, "ip": "10.0.0.5", "l3NetworkUuid": l3, "deviceId": 0},
        {"uuid": "f" * 32, "ip": "10.0.1.9", "l3NetworkUuid": l3, "deviceId": 1},
    ]
    vm["systemTags"] = ["hostname::web1", "console::on"]
    vm["extra"] = {"bootOrder": ["HardDisk", "CdRom"], "secure": False}
    app = make_app(node)
    async with app.run_test(size=(140, 50)) as pilot:
        screen = await open_view(pilot, app, "vm")
        row = next(i for i, r in enumerate(screen.rows) if r["uuid"] == vm["uuid"])
        screen.query_one(ResourceTable).move_cursor(row=row)
        await pilot.press("d")
        await pilot.pause(0.2)
        text = screen_text(app)
        lines = [line.split("│")[-1].strip() for line in text.splitlines()]  # the pane
        assert any(line.startswith("vmNics") and "2 items" in line for line in lines)
        assert any(line.startswith("[0]") and "10.0.0.5" in line for line in lines)
        assert any(line.startswith("ip") and "10.0.1.9" in line for line in lines)
        pane = " ".join(" ".join(lines).split())  # a long value folds onto the next line
        assert f"l3NetworkUuid {l3} (h111)" in pane
        assert any("hostname::web1, console::on" in line for line in lines)
        assert any(line.startswith("bootOrder") and "HardDisk, CdRom" in line for line in lines)
        assert any(line.startswith("secure") and line.endswith("false") for line in lines)
        table_part = text.split("VmInstance JSON")[0]
        assert "{'" not in table_part and "[{" not in table_part and "['" not in table_part


async def test_overview_at_80x24_shows_every_panel() -> None:
    app = make_app(FakeNode.sample(), stats_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: "48/128" in screen_text(app))
        text = screen_text(app)
        for title in ("resources", "management node", "capacity", "events", "jobs"):
            assert f"─{title}─" in text, title
        assert "vm            8" in text and "c22" in text  # every row of the sample too


async def test_job_failures_name_resources() -> None:
    node = FakeNode.sample()
    app = make_app(node)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_view(pilot, app, "host")
        host = screen.rows[0]
        app.data.jobs.apply(
            "/job/j1",
            {
                "jobUuid": "j1",
                "name": "ReconnectHost",
                "state": "Failed",
                "error": {"message": f"host {host['uuid']} does not answer"},
            },
        )
        screen.show_jobs()
        await pilot.pause(0.1)
        text = screen_text(app)
        assert f"host {host['name']} does not answer" in text and host["uuid"] not in text
