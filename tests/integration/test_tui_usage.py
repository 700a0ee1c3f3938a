"""Usage columns and the CPU sparkline of the dashboard, from a real in-process node whose
simulator hosts produce synthetic usage (GetVmMetrics / GetHostMetrics, one call a page)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.widgets import Sparkline

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import GiB, build_cloud
from tui.app import ZtuiApp
from tui.format import human_bytes
from tui.screens.resources import ResourceScreen
from tui.testing import screen_text, wait_until
from tui.widgets.detail import DetailPane
from tui.widgets.table import ResourceTable


async def open_view(pilot: Any, app: ZtuiApp, command: str) -> ResourceScreen:
    await pilot.press("colon", *command, "enter")
    assert await wait_until(
        pilot,
        lambda: (
            isinstance(app.screen, ResourceScreen)
            and app.screen.info.cli == command
            and app.screen.loaded
        ),
    )
    return app.screen  # type: ignore[return-value]


def cells(screen: ResourceScreen, uuid: str) -> tuple[str, str]:
    table = screen.query_one(ResourceTable)
    return (
        str(table.get_cell(uuid, "__cpu__")).strip(),
        str(table.get_cell(uuid, "__memory__")).strip(),
    )


async def test_usage_columns_and_sparkline_come_from_one_metrics_call_a_page(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path / "home") as (node, _server):
        api = Api(node)
        await api("UpdateGlobalConfig", category="metrics", name="simulator.interval", value="1")
        cloud = await build_cloud(api, hosts=((8, 16 * GiB), (8, 16 * GiB)))
        vms = [await cloud.vm(f"vm-{i}") for i in range(3)]
        await asyncio.sleep(4.5)  # a few synthetic ticks
        # samples are made when asked for: take them at the 1 s ticks, then freeze the window
        await api("GetVmMetrics", uuids=[v["uuid"] for v in vms])
        await api("GetHostMetrics", uuids=[cloud["h1"], cloud["h2"]])
        await api("UpdateGlobalConfig", category="metrics", name="simulator.interval", value="3600")
        await asyncio.sleep(1.5)
        expected = {v["uuid"]: await api("GetVmMetrics", uuid=v["uuid"]) for v in vms}
        assert all(len(e["samples"]) >= 2 for e in expected.values())

        app = ZtuiApp(f"unix:{node.config.unix_path}", stats_interval=0.5, backoff=(0.1, 0.5))
        calls: list[tuple[str, dict[str, Any]]] = []
        real_call = app.data.call

        async def recording(api_name: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
            calls.append((api_name, dict(args or {})))
            return await real_call(api_name, args, **kw)

        app.data.call = recording  # type: ignore[method-assign]
        async with app.run_test(size=(120, 35)) as pilot:
            assert await wait_until(pilot, lambda: app.data.status.live)
            screen = await open_view(pilot, app, "vm")
            page = [str(r["uuid"]) for r in screen.rows]
            assert sorted(page) == sorted(expected)
            for uuid, want in expected.items():
                latest = want["latest"]
                assert cells(screen, uuid) == (
                    f"{latest['cpuPercent']:.1f}",
                    human_bytes(latest["memoryUsed"]),
                )
            metrics = [args for name, args in calls if name == "GetVmMetrics"]
            assert metrics and all(args == {"uuids": page} for args in metrics)
            assert "cpu%" in screen_text(app) and "memory" in screen_text(app)

            # the detail pane: the highlighted VM's CPU over the window
            await pilot.press("d")
            row = screen.current_row()
            assert row is not None
            spark = screen.query_one(DetailPane).query_one(Sparkline)
            want = expected[str(row["uuid"])]
            assert await wait_until(pilot, lambda: spark.display and spark.region.height > 0)
            assert list(spark.data or []) == [s["cpuPercent"] for s in want["samples"]]
            assert "cpu% " in screen_text(app) and "last" in screen_text(app)

            # hosts: the same from GetHostMetrics, one call for the page
            calls.clear()
            screen = await open_view(pilot, app, "host")
            hosts = [str(r["uuid"]) for r in screen.rows]
            got = {h: await api("GetHostMetrics", uuid=h) for h in hosts}
            for uuid, want in got.items():
                latest = want["latest"]
                assert cells(screen, uuid) == (
                    f"{latest['cpuPercent']:.1f}",
                    human_bytes(latest["memoryUsed"]),
                )
            host_calls = [a for n, a in calls if n == "GetHostMetrics"]
            assert host_calls and all(a == {"uuids": hosts} for a in host_calls)
            assert not [a for n, a in calls if "uuid" in a and n.endswith("Metrics")]
