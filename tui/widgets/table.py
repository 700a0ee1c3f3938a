"""The resource table: one server-side page at a time, marks for bulk actions.

Moving the cursor past the last (or first) row asks the screen for the next (or previous)
page, so scrolling through 100,000 rows feels continuous while only a page is in memory.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from tui.catalogue import ResourceInfo
from tui.format import cell

MARK = "✓"


class ResourceTable(DataTable[Text]):
    class EdgeReached(Message):
        """The cursor tried to leave the page: ``direction`` is +1 (down) or -1 (up)."""

        def __init__(self, direction: int) -> None:
            super().__init__()
            self.direction = direction

    def __init__(self, info: ResourceInfo, columns: list[str] | None = None, **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.info = info
        self.columns_shown = list(columns or info.columns)

    def set_columns(self, columns: list[str]) -> None:
        self.columns_shown = list(columns)
        self.add_columns_for(wide=getattr(self, "_wide", False))

    def on_mount(self) -> None:
        self.add_columns_for(wide=False)

    def add_columns_for(self, *, wide: bool) -> None:
        self.clear(columns=True)
        self._wide = wide
        self.add_column(" ", key="__mark__", width=1)
        for name in self.columns_shown:
            # A reference column shows names, so its header names the thing: zoneUuid -> zone.
            label = name[: -len("Uuid")] if self.info.ref(name) and name.endswith("Uuid") else name
            self.add_column(label, key=name)

    def show(
        self,
        rows: list[dict[str, Any]],
        marks: set[str],
        names: dict[str, dict[str, str]],
        *,
        wide: bool,
        cursor_uuid: str | None = None,
        cursor_row: int | None = None,
    ) -> None:
        if wide != getattr(self, "_wide", None):
            self.add_columns_for(wide=wide)  # column widths only grow: start afresh
        else:
            self.clear()
        for row in rows:
            self.add_row(*self.cells(row, marks, names, wide=wide), key=str(row.get("uuid")))
        if not rows:
            return
        index = cursor_row if cursor_row is not None else 0
        if cursor_uuid is not None:
            index = next((i for i, r in enumerate(rows) if r.get("uuid") == cursor_uuid), index)
        self.move_cursor(row=max(0, min(index, len(rows) - 1)), animate=False)

    def cells(
        self, row: dict[str, Any], marks: set[str], names: dict[str, dict[str, str]], *, wide: bool
    ) -> list[Text]:
        out = [Text(MARK if row.get("uuid") in marks else "", style="bold magenta")]
        for name in self.columns_shown:
            value = row.get(name)
            target = self.info.ref(name)
            if target and isinstance(value, str) and names.get(target, {}).get(value):
                out.append(Text(names[target][value]))
                continue
            out.append(cell(name, value, self.info.fields.get(name), wide=wide))
        return out

    def update_row(
        self, row: dict[str, Any], marks: set[str], names: dict[str, dict[str, str]], *, wide: bool
    ) -> bool:
        """Redraw one row in place; False when it is not on this page."""
        key = str(row.get("uuid"))
        if key not in self.rows:
            return False
        for name, value in zip(
            ["__mark__", *self.columns_shown], self.cells(row, marks, names, wide=wide), strict=True
        ):
            self.update_cell(key, name, value)
        return True

    @property
    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.EdgeReached(1))
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.row_count and self.cursor_row <= 0:
            self.post_message(self.EdgeReached(-1))
            return
        super().action_cursor_up()

    def action_page_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.EdgeReached(1))
            return
        super().action_page_down()

    def action_page_up(self) -> None:
        if self.row_count and self.cursor_row <= 0:
            self.post_message(self.EdgeReached(-1))
            return
        super().action_page_up()
