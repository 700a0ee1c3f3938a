"""The resource table's cheaper drawing: same pixels as DataTable's own path, fewer redraws."""

from __future__ import annotations

from typing import Any

from rich.style import Style
from textual.app import App, ComposeResult
from textual.geometry import Region

import tui.widgets.table as table_module
from tui.catalogue import ResourceInfo
from tui.widgets.table import ResourceTable

INFO = ResourceInfo(
    name="VmInstance",
    cli="vm",
    summary="",
    columns=["uuid", "name", "state", "cpuNum", "memorySize", "hostUuid", "createDate"],
    fields={
        "uuid": {"type": "string"},
        "name": {"type": "string"},
        "state": {"type": "string", "enum": ["Running", "Stopped"]},
        "cpuNum": {"type": "int"},
        "memorySize": {"type": "int"},
        "hostUuid": {"type": "string", "resource": "Host"},
        "createDate": {"type": "timestamp"},
    },
    joins=[],
    query_api="QueryVmInstance",
)


def rows(n: int, state: str = "Running") -> list[dict[str, Any]]:
    return [
        {
            "uuid": f"{i:032x}",
            "name": f"vm-{i}" + ("-with-a-longer-name" if i % 3 == 0 else ""),
            "state": state if i % 2 else "Stopped",
            "cpuNum": i % 8 + 1,
            "memorySize": (i + 1) * 2**30,
            "hostUuid": None if i % 4 == 0 else f"{i % 5:032x}",
            "createDate": "2025-01-01T00:00:00",
        }
        for i in range(n)
    ]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ResourceTable(INFO, id="table")


def chars(table: ResourceTable) -> list[list[tuple[str, Style | None]]]:
    """Every line of the table as (character, style) pairs: segment boundaries do not matter."""
    table._clear_caches()
    lines = table.render_lines(Region(0, 0, table.size.width, table.size.height))
    return [[(ch, seg.style) for seg in strip for ch in seg.text] for strip in lines]


async def test_direct_drawing_draws_exactly_what_datatable_draws(monkeypatch) -> None:
    """The direct cells and the styles looked up once per pass, against DataTable's own."""
    app = TableApp()
    async with app.run_test(size=(100, 16)) as pilot:
        table = app.query_one(ResourceTable)
        names = {"Host": {f"{1:032x}": "h1"}}
        table.show(rows(12), {f"{3:032x}"}, names, wide=False)
        table.focus()
        table.move_cursor(row=3)
        await pilot.hover(ResourceTable, offset=(5, 6))  # a hover row as well as the cursor row
        await pilot.pause()
        for wide in (False, True):
            table.show(rows(12), {f"{3:032x}"}, names, wide=wide, cursor_row=3)
            await pilot.pause()
            fast = chars(table)
            monkeypatch.setattr(table_module, "FAST_CELLS", False)
            slow = chars(table)
            monkeypatch.setattr(table_module, "FAST_CELLS", True)
            assert fast == slow
            assert any(ch == "✓" for line in fast for ch, _s in line)


async def test_a_refresh_with_the_same_rows_updates_only_changed_cells() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 16)) as pilot:
        table = app.query_one(ResourceTable)
        page = rows(10)
        table.show(page, set(), {}, wide=False)
        table.move_cursor(row=4)
        await pilot.pause()
        before = table._update_count
        key = table.current_key  # as the screen passes it on a reload
        table.show([dict(r) for r in page], set(), {}, wide=False, cursor_uuid=key)  # no change
        assert table._update_count == before
        assert table.cursor_row == 4
        changed = [dict(r) for r in page]
        changed[2]["state"] = "Migrating"
        table.show(changed, set(), {}, wide=False, cursor_uuid=key)
        assert table._update_count == before + 1  # one cell
        assert str(table.get_row_at(2)[3]) == "Migrating"
        assert table.cursor_row == 4
        table.show(rows(10)[1:], set(), {}, wide=False)  # other rows: built afresh
        assert table.row_count == 9
        assert str(table.get_row_at(0)[2]) == "vm-1"
