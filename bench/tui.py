"""The dashboard at scale: ztui driven headless (Textual's Pilot) against a real node process.

The node holds ``tui_vms`` bulk-loaded VMs (:func:`bench.fastpath.bulk_load`, as the query
family loads them). The real :class:`tui.app.ZtuiApp` connects to it over the unix socket and
runs inside ``App.run_test`` (no terminal; rendering still happens). Three operations are
timed, each against the raw API calls behind it, replayed one after the other through a
plain :class:`zmn.client.AsyncClient` in the same run:

* **open** the VM view (``:vm`` from the overview) until its first page is on screen;
* **filter** ``state=Stopped`` from Enter until the filtered page is on screen;
* **refresh frame**: the re-query and redraw a live event triggers (the 0.4 s debounce that
  batches events is not part of the frame).

The calls behind each operation are recorded from the app's own data source while it runs,
so the baseline is exactly what the dashboard asked the node for. Each operation is also
reported as the CPU time the dashboard's process spent on it (``<op>_cpu``: user + system,
the node excluded): on a machine loaded by other work the wall time mostly measures the
neighbours, the CPU time what the dashboard itself costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.fastpath import Layout, bulk_load
from bench.harness import Result, Run, Samples
from bench.node import NodeProcess
from bench.query import quiet_node
from zmn.client import AsyncClient

FAMILY = "tui"
SIZE = (120, 40)
GOALS = {"open_vm_view": 300.0, "filter": 200.0, "refresh_frame": 100.0}


async def measure(run: Run, node: NodeProcess) -> None:
    """``node``: an initialised home, not started."""
    print("tui", flush=True)
    quiet_node(node)
    node.start()
    try:
        vms = run.sizes.tui_vms
        layout = Layout(zones=2, hosts=max(10, vms // 100), vms=vms)
        await asyncio.to_thread(bulk_load, node.db_url, layout)
        await _measure(run, node, vms, run.sizes.tui_repeats)
    finally:
        node.stop()


class Recorder:
    """Wraps the app's ``DataSource.call`` to note every call made while ``on``."""

    def __init__(self, data: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.on = False
        inner = data.call

        async def call(api: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
            # the view's own calls: its page, and the names of the UUIDs it shows (the
            # overview underneath may still be finishing a refresh of its own)
            view_call = api == "QueryVmInstance" or (args or {}).get("fields") == ["uuid", "name"]
            if self.on and view_call:
                self.calls.append((api, dict(args or {})))
            return await inner(api, args, **kw)

        data.call = call

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        calls, self.calls = self.calls, []
        return calls


async def _measure(run: Run, node: NodeProcess, vms: int, repeats: int) -> None:
    from textual.widgets import Input

    from tui.app import ZtuiApp
    from tui.screens.overview import OverviewScreen
    from tui.screens.resources import ResourceScreen
    from tui.widgets.filterbar import FilterBar

    size = f"{vms:,} VMs"
    app = ZtuiApp(node.endpoint, stats_interval=3600)
    behind: dict[str, list[list[tuple[str, dict[str, Any]]]]] = {k: [] for k in GOALS}
    samples = {k: Samples() for k in GOALS}
    rows = 0
    cpu = {k: Samples() for k in GOALS}  # the app process's CPU seconds per operation
    async with app.run_test(size=SIZE) as pilot:
        recorder = Recorder(app.data)

        async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
            end = time.perf_counter() + timeout
            while not predicate():
                if time.perf_counter() > end:
                    raise TimeoutError("the dashboard did not get there")
                await asyncio.sleep(0.001)

        def shown(before: int) -> bool:
            return isinstance(app.screen, ResourceScreen) and app.screen.loads > before

        await until(lambda: app.data.status.live and app.data.catalogue is not None)
        kept = "view-VmInstance"
        await pilot.pause(0.5)  # the overview's first refresh
        for _ in range(repeats):
            # ---- open: from the overview, ":vm" until the first page is drawn
            await until(lambda: isinstance(app.screen, OverviewScreen))
            # the overview's own refresh on coming back is done (its calls are not the view's)
            await until(
                lambda: (
                    not any(
                        w.group in ("counts", "capacity") and not w.is_finished for w in app.workers
                    )
                )
            )
            before = app.get_screen(kept).loads if app.is_screen_installed(kept) else 0  # type: ignore[attr-defined]
            recorder.on = True
            t0, c0 = time.perf_counter(), time.process_time()
            app.open_view("VmInstance")
            await until(lambda: shown(before))  # noqa: B023 - awaited at once
            paint(app)
            samples["open_vm_view"].add(time.perf_counter() - t0)
            cpu["open_vm_view"].add(time.process_time() - c0)
            recorder.on = False
            behind["open_vm_view"].append(recorder.take())
            screen = app.screen
            assert isinstance(screen, ResourceScreen)
            rows = len(screen.rows)

            # ---- filter: type "/state=Stopped" (not timed), then time from Enter
            await pilot.press("slash", *"state=Stopped")
            loads = screen.loads
            recorder.on = True
            t0, c0 = time.perf_counter(), time.process_time()
            bar = screen.query_one(FilterBar)
            bar.post_message(Input.Submitted(bar, bar.value))  # Enter, without Pilot's idle wait
            await until(lambda: screen.loads > loads)  # noqa: B023 - awaited at once
            paint(app)
            samples["filter"].add(time.perf_counter() - t0)
            cpu["filter"].add(time.process_time() - c0)
            recorder.on = False
            behind["filter"].append(recorder.take())
            if not screen.rows or any(r.get("state") != "Stopped" for r in screen.rows):
                samples["filter"].fail("the filtered page holds other states")

            # ---- a live refresh frame: the re-query and redraw an event schedules
            for _frame in range(3):
                loads = screen.loads
                recorder.on = True
                t0, c0 = time.perf_counter(), time.process_time()
                screen.load()
                await until(lambda: screen.loads > loads)  # noqa: B023 - awaited at once
                paint(app)
                samples["refresh_frame"].add(time.perf_counter() - t0)
                cpu["refresh_frame"].add(time.process_time() - c0)
                recorder.on = False
                behind["refresh_frame"].append(recorder.take())
            await pilot.press("escape")  # clear the filter
            await pilot.press("escape")  # back to the overview
    await _report(run, node, size, samples, cpu, behind, rows)


async def _report(
    run: Run,
    node: NodeProcess,
    size: str,
    samples: dict[str, Samples],
    cpu: dict[str, Samples],
    behind: dict[str, list[list[tuple[str, dict[str, Any]]]]],
    rows: int,
) -> None:
    async with AsyncClient(node.endpoint) as client:
        for name, goal in GOALS.items():
            raw = Samples()
            for calls in behind[name]:

                async def replay(calls: list[tuple[str, dict[str, Any]]] = calls) -> None:
                    for api, args in calls:
                        await client.call(api, args)

                await _timed(replay, raw)
            apis = sorted({api for calls in behind[name] for api, _a in calls})
            per_op = sum(len(c) for c in behind[name]) / max(1, len(behind[name]))
            base = run.baseline(
                Result(
                    "baseline",
                    f"tui_{name}_api",
                    raw.p(50) * 1e3,
                    "ms p50",
                    raw,
                    note=f"the {per_op:.1f} API call(s) behind one {name} ({', '.join(apis)}),"
                    " replayed one after the other by a plain client",
                ),
            )
            s = samples[name]
            run.add(
                Result(
                    FAMILY,
                    name,
                    s.p(50) * 1e3,
                    "ms p50",
                    s,
                    size=size,
                    note=f"p95 {s.p(95) * 1e3:.0f} ms; real ZtuiApp under Pilot, 120x40,"
                    f" pages of {rows} rows",
                ).compare(
                    base,
                    goal=f"p95 < {goal:.0f} ms",
                    check=lambda _v, _r: s.p(95) * 1e3 < goal,  # noqa: B023 - called at once
                )
            )
            c = cpu[name]
            run.add(
                Result(
                    FAMILY,
                    f"{name}_cpu",
                    c.p(50) * 1e3,
                    "ms CPU p50",
                    c,
                    size=size,
                    note=f"p95 {c.p(95) * 1e3:.0f} ms; CPU time (user+system) of the dashboard's"
                    " process during one operation, the node's not included",
                ).compare(
                    base,
                    goal=f"p95 < {goal:.0f} ms",
                    check=lambda _v, _r: c.p(95) * 1e3 < goal,  # noqa: B023 - called at once
                )
            )


def paint(app: Any) -> None:
    """Lay out and render the whole current screen now: the frame a terminal would get.

    (``Pilot.pause`` would wait for the process to go idle, which on a loaded machine
    measures the neighbours, not the dashboard.)"""
    screen = app.screen
    screen._refresh_layout(app.size)
    screen._compositor.render_update(full=True)


async def _timed(fn: Callable[[], Awaitable[Any]], samples: Samples) -> None:
    t0 = time.perf_counter()
    try:
        await fn()
    except Exception as exc:
        samples.fail(f"{type(exc).__name__}: {exc}")
        return
    samples.add(time.perf_counter() - t0)
