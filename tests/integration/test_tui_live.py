"""The dashboard against a real in-process management node (real socket, real events)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.inproc import Api, running_node
from tui.app import ZtuiApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.picker import Picker
from tui.screens.resources import ResourceScreen
from tui.testing import screen_text, wait_until

GiB = 2**30


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    """Zones z1 (enabled) and z2 (disabled); clusters c1, c2 in z1; hosts h1, h2 in c1."""
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        z1 = (await api("CreateZone", name="z1"))["inventory"]
        await api("CreateZone", name="z2")
        await api("ChangeZoneState", uuid="z2", stateEvent="disable")
        for name in ("c1", "c2"):
            await api("CreateCluster", name=name, zoneUuid=z1["uuid"], hypervisorType="Simulator")
        for i in (1, 2):
            await api(
                "AddSimulatorHost",
                name=f"h{i}",
                managementIp=f"192.0.2.{i}",
                clusterUuid="c1",
                cpuCapacity=16,
                memoryCapacity=32 * GiB,
            )
        yield api, f"unix:{node.config.unix_path}"


def make_app(endpoint: str, **kw) -> ZtuiApp:
    return ZtuiApp(endpoint, stats_interval=0.5, backoff=(0.1, 0.5), **kw)


async def open_view(pilot, app: ZtuiApp, command: str) -> ResourceScreen:
    assert await wait_until(pilot, lambda: app.data.status.live)
    await pilot.press("colon", *command, "enter")
    assert await wait_until(
        pilot, lambda: isinstance(app.screen, ResourceScreen) and app.screen.loaded
    )
    return app.screen  # type: ignore[return-value]


def names(screen: ResourceScreen) -> list[str]:
    return [r["name"] for r in screen.rows]


async def test_overview_renders_counts_capacity_and_stats(cloud) -> None:
    _api, endpoint = cloud
    app = make_app(endpoint)
    async with app.run_test(size=(120, 50)) as pilot:
        # Counts and capacity are fetched by separate workers: wait for both.
        assert await wait_until(
            pilot,
            lambda: "2 Connected" in screen_text(app) and "0/32" in screen_text(app),
            timeout=10,
        )
        text = screen_text(app)
        assert "1 Disabled 1 Enabled" in text  # zones
        assert "2 Enabled" in text  # clusters and hosts
        assert "0/32" in text and "64.0G" in text  # z1 and c1 capacity: 2 hosts x 16 CPUs, 32 GiB
        assert await wait_until(pilot, lambda: "api/s" in screen_text(app))


async def test_zone_view_filter_escape_and_live_creation(cloud) -> None:
    api, endpoint = cloud
    app = make_app(endpoint)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "zone")
        assert names(screen) == ["z1", "z2"]
        assert "description" in screen_text(app)  # a column the catalogue names for zones
        await pilot.press("slash", *"state=Disabled", "enter")
        assert await wait_until(pilot, lambda: names(screen) == ["z2"])
        assert screen.conditions == ["state=Disabled"]
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: names(screen) == ["z1", "z2"])
        assert not screen.conditions
        started = time.monotonic()
        await api("CreateZone", name="z3-from-cli")
        assert await wait_until(pilot, lambda: "z3-from-cli" in names(screen), timeout=1.0)
        assert time.monotonic() - started < 1.0
        await api("ChangeZoneState", uuid="z1", stateEvent="disable")
        assert await wait_until(pilot, lambda: screen.rows[0]["state"] == "Disabled", timeout=1.0)
        await api("DeleteZone", uuid="z3-from-cli")
        assert await wait_until(pilot, lambda: "z3-from-cli" not in names(screen), timeout=1.0)


async def test_drill_zone_to_clusters_to_hosts(cloud) -> None:
    _api, endpoint = cloud
    app = make_app(endpoint)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot, app, "zone")
        await pilot.press("enter")
        assert isinstance(app.screen, Picker)
        await pilot.press("enter")  # the first child view: clusters
        assert await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, ResourceScreen)
                and app.screen.loaded
                and app.screen.info.name == "Cluster"
            ),
        )
        assert names(app.screen) == ["c1", "c2"]
        await pilot.press("enter")
        if isinstance(app.screen, Picker):
            await pilot.press("enter")
        assert await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, ResourceScreen)
                and app.screen.loaded
                and app.screen.info.name == "Host"
            ),
        )
        assert names(app.screen) == ["h1", "h2"]
        assert "c1" in screen_text(app)  # clusterUuid shown by name


async def test_confirmation_gates_a_host_action(cloud) -> None:
    api, endpoint = cloud
    app = make_app(endpoint)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        await pilot.press("a")
        picker = app.screen
        assert isinstance(picker, Picker)
        labels = [a.label for _l, a in picker.items]
        assert {"disable", "maintain", "reconnect"} <= set(labels)
        assert "enable" not in labels  # the host is Enabled: a no-op is not offered
        await pilot.press(*["down"] * labels.index("disable"), "enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause(0.3)
        hosts = (await api("QueryHost", conditions=["name=h1"]))["inventories"]
        assert hosts[0]["state"] == "Enabled"
        await pilot.press("a", *["down"] * labels.index("disable"), "enter", "y")
        assert await wait_until(pilot, lambda: screen.rows[0]["state"] == "Disabled", timeout=3)
        hosts = (await api("QueryHost", conditions=["name=h1"]))["inventories"]
        assert hosts[0]["state"] == "Disabled"


async def test_bulk_reconnect_runs_as_jobs(cloud) -> None:
    _api, endpoint = cloud
    app = make_app(endpoint)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        await pilot.press("asterisk")
        assert len(screen.marks) == 2
        await pilot.press("a")
        labels = [a.label for _l, a in app.screen.items]
        await pilot.press(*["down"] * labels.index("reconnect"), "enter", "y")
        assert await wait_until(
            pilot,
            lambda: (
                sum(1 for j in app.data.jobs.jobs.values() if j["name"] == "ReconnectHost") == 2
            ),
            timeout=5,
        )


async def test_read_only_mode_offers_no_actions(cloud) -> None:
    _api, endpoint = cloud
    app = make_app(endpoint, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, app, "host")
        assert "a" not in screen.active_bindings
        await pilot.press("a")
        await pilot.pause(0.2)
        assert app.screen is screen
        assert "read-only" in screen_text(app)


async def test_stale_header_then_reconnects_by_itself(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_node(home) as (node, _server):
        await Api(node)("CreateZone", name="before")
        endpoint = f"unix:{node.config.unix_path}"
        app = make_app(endpoint)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(pilot, app, "zone")
            assert names(screen) == ["before"]
            await node.stop(grace=1)
            await _server.stop()
            assert await wait_until(pilot, lambda: "stale since" in screen_text(app), timeout=5)
            assert names(screen) == ["before"]  # the last data stays
            async with running_node(home) as (node2, _server2):
                await Api(node2)("CreateZone", name="after")
                assert await wait_until(pilot, lambda: "● live" in screen_text(app), timeout=5)
                assert await wait_until(
                    pilot, lambda: names(screen) == ["after", "before"], timeout=3
                )


# --------------------------------------------------------------------------- a cloud with VMs

ROOT = Path(__file__).resolve().parents[2]


async def build_demo_cloud(api: Api) -> None:
    """demo/cloud.zcli (zone z1, cluster c1, hosts h1-h3, l2/l3 with a 101-address range)."""
    for line in (ROOT / "demo" / "cloud.zcli").read_text().splitlines():
        if line.startswith("api "):
            name, *pairs = line.split()[1:]
            await api(name, **dict(p.split("=", 1) for p in pairs))
    for i, host in enumerate(("h1", "h1", "h2"), 1):
        await api(
            "CreateVmInstance",
            name=f"vm{i}",
            imageUuid="img",
            instanceOfferingUuid="small",
            l3NetworkUuids=["l3"],
            hostUuid=host,
        )


@pytest.fixture
async def vmcloud(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        await build_demo_cloud(api)
        yield api, f"unix:{node.config.unix_path}"


async def test_overview_shows_ip_capacity_per_zone_and_cluster(vmcloud) -> None:
    api, endpoint = vmcloud
    used = (await api("QueryUsedIp", conditions=["l3Network.name=l3"], count=True))["total"]
    assert used >= 3  # one address per VM NIC
    app = make_app(endpoint)
    async with app.run_test(size=(160, 50)) as pilot:
        want = f"{used}/101"

        def rows() -> list[str]:
            return [line for line in screen_text(app).splitlines() if want in line]

        # once for zone z1 and once for cluster c1 (its L2 "l2" carries the L3 "l3"); the two
        # rows come from separate reads and may reach the screen in different frames
        assert await wait_until(pilot, lambda: len(rows()) >= 2, timeout=10), rows()
        lines = rows()
        assert len(lines) == 2, lines
        assert "ip" in lines[0]


async def test_migrate_form_offers_candidate_hosts_and_runs_as_a_job(vmcloud) -> None:
    api, endpoint = vmcloud
    app = make_app(endpoint)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_view(pilot, app, "vm")
        vm1 = next(r for r in screen.rows if r["name"] == "vm1")
        screen.query_one("#table").move_cursor(row=screen.rows.index(vm1))
        await pilot.press("a")
        picker = app.screen
        assert isinstance(picker, Picker)
        labels = [a.label for _l, a in picker.items]
        await pilot.press(*["down"] * labels.index("migrate…"), "enter")
        from textual.widgets import Select

        from tui.screens.form import FormScreen

        assert await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        form = app.screen
        select = form.query_one("#p-hostUuid", Select)
        offered = [str(label) for label, _v in select._options if _v is not Select.BLANK]
        # hosts of the VM's cluster, enabled and connected, not the one it runs on
        assert [o.split()[0] for o in offered if o.strip()] == ["h2", "h3"], offered
        h3 = (await api("QueryHost", conditions=["name=h3"]))["inventories"][0]["uuid"]
        select.value = h3
        await pilot.click("#next")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        text = screen_text(app)
        assert "MigrateVm hostUuid=" in text and "hostUuid = h3" in text
        await pilot.press("y")
        assert await wait_until(
            pilot, lambda: any(j["name"] == "MigrateVm" for j in app.data.jobs.jobs.values())
        )

        async def moved() -> bool:
            rows = (await api("QueryVmInstance", conditions=["name=vm1"]))["inventories"]
            return rows[0]["hostUuid"] == h3

        deadline = time.monotonic() + 10
        while not await moved() and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert await moved()
        assert await wait_until(
            pilot, lambda: next(r for r in screen.rows if r["name"] == "vm1")["hostUuid"] == h3
        )


async def test_management_node_view_shows_ring_ownership(vmcloud) -> None:
    _api, endpoint = vmcloud
    app = make_app(endpoint)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_view(pilot, app, "mn")
        assert screen.info.name == "ManagementNode"
        assert screen.rows[0]["onRing"] is True and screen.rows[0]["ringShare"] == 1.0
        # the rows are loaded; the table paints them at its next refresh (later under load)
        shown = ("ringShare", "100.0%", "Running")
        assert await wait_until(
            pilot, lambda: all(s in screen_text(app) for s in shown), timeout=5
        ), screen_text(app)
        before = screen.rows[0]["heartbeat"]
        # live: the view re-queries on its own; the heartbeat moves on
        assert await wait_until(pilot, lambda: screen.rows[0]["heartbeat"] != before, timeout=8)


async def test_keyset_paging_past_the_first_page_on_a_real_node(tmp_path: Path) -> None:
    """The node's Query APIs take ``after``: the view pages by cursor, forward and back."""
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        for i in range(45):
            await api("CreateZone", name=f"zone{i:02d}")
        app = make_app(f"unix:{node.config.unix_path}")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(pilot, app, "zone")
            assert app.data.keyset("Zone")  # the catalogue lists ``after``
            calls: list[dict] = []
            inner = app.data.call

            async def call(name: str, args: dict | None = None, **kw):
                if name == "QueryZone" and args and "limit" in args:
                    calls.append(dict(args))
                return await inner(name, args, **kw)

            app.data.call = call  # type: ignore[method-assign]
            page = screen.page_size
            assert page == 20 and names(screen) == [f"zone{i:02d}" for i in range(page)]
            assert screen.total == 45 and screen.next_cursor
            table = screen.query_one("#table")
            table.move_cursor(row=page - 1)
            await pilot.press("down")  # past the last row: the next page, by cursor
            assert await wait_until(pilot, lambda: names(screen)[:1] == ["zone20"])
            assert names(screen) == [f"zone{i:02d}" for i in range(20, 40)]
            assert table.cursor_row == 0 and "21-40 of 45" in screen_text(app)
            await pilot.press("right_square_bracket")
            assert await wait_until(pilot, lambda: names(screen)[:1] == ["zone40"])
            assert names(screen) == [f"zone{i:02d}" for i in range(40, 45)]
            assert screen.next_cursor is None and "page 3/3" in screen_text(app)
            await pilot.press("up")  # before the first row: back one page, cursor at the bottom
            assert await wait_until(pilot, lambda: names(screen)[:1] == ["zone20"])
            assert table.cursor_row == page - 1
            # A zone created meanwhile on an earlier page does not shift this one.
            await api("CreateZone", name="zone00a")
            await pilot.press("r")
            assert await wait_until(pilot, lambda: screen.total == 46)
            assert names(screen) == [f"zone{i:02d}" for i in range(20, 40)]
            await pilot.press("left_square_bracket")
            assert await wait_until(pilot, lambda: names(screen)[:1] == ["zone00"])
            assert names(screen)[1] == "zone00a"
            assert all("start" not in a for a in calls)
            assert [a.get("after") is not None for a in calls[:3]] == [True, True, True]
