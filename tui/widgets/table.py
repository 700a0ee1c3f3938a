"""The resource table: one server-side page at a time, marks for bulk actions.

Moving the cursor past the last (or first) row asks the screen for the next (or previous)
page, so scrolling through 100,000 rows feels continuous while only a page is in memory.

Drawing is the dashboard's main cost at scale, so two things are cheaper than DataTable's
own way: a page shown again with the same rows (a live refresh) changes only the cells that
differ, in place; and a plain one-line cell (one style, fits its column) is drawn as
segments directly instead of through Rich's padding and line-splitting renderers (the same
characters and styles; anything else still takes DataTable's path).
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.css.styles import RenderStyles
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable

from tui.catalogue import ResourceInfo
from tui.format import cell, human_bytes

MARK = "✓"


def _fast_cells_supported() -> bool:
    """The direct cell path relies on DataTable internals (those of Textual 0.80-8.x); where
    they differ, every cell takes DataTable's own path."""
    styles = getattr(DataTable, "_get_styles_to_render_cell", None)
    render = getattr(DataTable, "_render_cell", None)
    code = getattr(getattr(styles, "__wrapped__", styles), "__code__", None)
    render_code = getattr(render, "__code__", None)
    return (
        code is not None
        and render_code is not None
        and code.co_varnames[: code.co_argcount]
        == (
            "self",
            "is_header_cell",
            "is_row_label_cell",
            "is_fixed_style_cell",
            "hover",
            "cursor",
            "show_cursor",
            "show_hover_cursor",
            "has_css_foreground_priority",
            "has_css_background_priority",
        )
        and render_code.co_varnames[: render_code.co_argcount]
        == ("self", "row_index", "column_index", "base_style", "width", "cursor", "hover")
    )


FAST_CELLS = _fast_cells_supported()


class _PassStyles:
    """Component styles whose ``rich_style`` is worked out once (within one drawing pass)."""

    def __init__(self, styles: RenderStyles) -> None:
        self._styles = styles
        self.rich_style = styles.rich_style

    def __getattr__(self, name: str) -> Any:
        return getattr(self._styles, name)


def same_cell(old: object, new: Text) -> bool:
    """Whether a shown cell already looks like ``new`` (Text equality ignores the style)."""
    return (
        isinstance(old, Text)
        and old.plain == new.plain
        and old.style == new.style
        and old.justify == new.justify
        and old.spans == new.spans
    )


USAGE_COLUMNS = [("__cpu__", "cpu%"), ("__memory__", "memory")]


def usage_cells(usage: dict[str, Any] | None) -> list[Text]:
    """The cpu% and memory cells of one row from its metrics answer (``-``: no sample yet)."""
    latest = (usage or {}).get("latest") or {}
    cpu, used = latest.get("cpuPercent"), latest.get("memoryUsed")
    out = [Text("-", style="dim", justify="right")] * 2
    if isinstance(cpu, int | float):
        style = "green" if cpu < 70 else "yellow" if cpu < 90 else "bold red"
        out[0] = Text(f"{cpu:.1f}", style=style, justify="right")
    if isinstance(used, int | float):
        out[1] = Text(human_bytes(used), justify="right")
    return out


class ResourceTable(DataTable[Text]):
    class EdgeReached(Message):
        """The cursor tried to leave the page: ``direction`` is +1 (down) or -1 (up)."""

        def __init__(self, direction: int) -> None:
            super().__init__()
            self.direction = direction

    BINDINGS = [
        Binding("g,home", "first_row", "First row", show=False),
        Binding("G,end", "last_row", "Last row", show=False),
    ]

    def __init__(self, info: ResourceInfo, columns: list[str] | None = None, **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.info = info
        self.columns_shown = list(columns or info.columns)
        # Usage columns (VMs and hosts on a node with the metrics APIs): the screen sets
        # usage_columns on, and fills usage from one metrics call per page.
        self.usage_columns = False
        self.usage: dict[str, dict[str, Any]] = {}

    def extra_keys(self) -> list[str]:
        return [key for key, _ in USAGE_COLUMNS] if self.usage_columns else []

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
        if self.usage_columns:
            for key, label in USAGE_COLUMNS:
                self.add_column(label, key=key)

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
        keys = [str(row.get("uuid")) for row in rows]
        if wide == getattr(self, "_wide", None) and keys == self.shown_keys():
            # The same rows in the same order (a live refresh): redraw only changed cells.
            for row in rows:
                self.update_row(row, marks, names, wide=wide)
        else:
            if wide != getattr(self, "_wide", None):
                self.add_columns_for(wide=wide)  # column widths only grow: start afresh
            else:
                self.clear()
            for key, row in zip(keys, rows, strict=True):
                self.add_row(*self.cells(row, marks, names, wide=wide), key=key)
        if not rows:
            return
        index = cursor_row if cursor_row is not None else 0
        if cursor_uuid is not None:
            index = next((i for i, r in enumerate(rows) if r.get("uuid") == cursor_uuid), index)
        index = max(0, min(index, len(rows) - 1))
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)

    def shown_keys(self) -> list[str | None]:
        """The row keys in display order."""
        return [key.value for key in self.rows]

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
        if self.usage_columns:
            out.extend(usage_cells(self.usage.get(str(row.get("uuid")))))
        return out

    def update_row(
        self, row: dict[str, Any], marks: set[str], names: dict[str, dict[str, str]], *, wide: bool
    ) -> bool:
        """Redraw the cells of one row that changed, in place; False when it is not on this
        page."""
        key = str(row.get("uuid"))
        if key not in self.rows:
            return False
        shown = self.get_row(key)
        for name, old, new in zip(
            ["__mark__", *self.columns_shown, *self.extra_keys()],
            shown,
            self.cells(row, marks, names, wide=wide),
            strict=True,
        ):
            if not same_cell(old, new):
                self.update_cell(key, name, new, update_width=True)
        return True

    # ------------------------------------------------------------------ drawing

    _pass: dict[Any, Any] | None = None  # styles looked up once per drawing pass

    def render_lines(self, crop: Region) -> list[Strip]:
        """Draw, with this widget's styles worked out once for all lines (DataTable asks for
        them again on every line, and each answer walks the ancestors)."""
        self._pass = {} if FAST_CELLS else None
        try:
            return super().render_lines(crop)
        finally:
            self._pass = None

    @property
    def rich_style(self) -> Style:
        memo = self._pass
        if memo is None:
            return super().rich_style
        style = memo.get("")
        if style is None:
            style = memo[""] = super().rich_style
        return style  # type: ignore[no-any-return]

    def get_component_styles(self, *names: str) -> RenderStyles:
        memo = self._pass
        if memo is None:
            return super().get_component_styles(*names)
        styles = memo.get(names)
        if styles is None:
            styles = memo[names] = _PassStyles(super().get_component_styles(*names))
        return styles  # type: ignore[no-any-return,return-value]

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """DataTable's cell renderer, with a direct path for a plain one-line Text cell."""
        memo = self._pass
        if memo is None or row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        # What is the same for every cell of this pass (reactive reads are not free).
        fixed = memo.get("fixed")
        if fixed is None:
            fixed = memo["fixed"] = (
                self.cell_padding,
                self.fixed_rows,
                self.fixed_columns,
                self._show_hover_cursor,
                self._update_count,
                self._pseudo_class_state,
            )
        pad, fixed_rows, fixed_columns, show_hover, updates, pseudo = fixed
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cache_key = (row_key, column_key, base_style, cursor, hover, show_hover, updates, pseudo)
        cached = self._cell_render_cache.get(cache_key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        value = self._data.get(row_key, {}).get(column_key)
        row = self.rows.get(row_key)
        inner = width - 2 * pad
        if (
            type(value) is not Text
            or row is None
            or row.height != 1
            or row_index < fixed_rows
            or column_index < fixed_columns
            or value.spans
            or value.justify not in (None, "default", "left", "right")
        ):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        plain = value.plain
        used = cell_len(plain)
        if used > inner or "\n" in plain or "\t" in plain:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        styles = memo.get((cursor, hover))
        if styles is None:
            styles = memo[cursor, hover] = self._get_styles_to_render_cell(
                False,
                False,
                False,
                hover,
                cursor,
                self.show_cursor,
                show_hover,
                self.cursor_foreground_priority == "css",
                self.cursor_background_priority == "css",
            )
        component, post = styles
        pre = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component
        text_style = self.app.console.get_style(value.style) if value.style else None
        outer = pre + post if post else pre
        inside = pre + text_style if text_style else pre
        if post:
            inside = inside + post
        excess = inner - used
        line: list[Segment] = []
        if pad:
            line.append(Segment(" " * pad, outer))
        if value.justify == "right":
            line.append(Segment(" " * excess + plain, inside))
        elif value.justify == "left":
            line.append(Segment(plain + " " * excess, inside))
        else:
            if plain:
                line.append(Segment(plain, inside))
            if excess:
                line.append(Segment(" " * excess, outer))
        if pad:
            line.append(Segment(" " * pad, outer))
        lines = [line]
        self._cell_render_cache[cache_key] = lines
        return lines

    @property
    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

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
