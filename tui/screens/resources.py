"""A view of one resource type: a server-side paged table, filter, sort, detail, actions.

Columns are the catalogue's ``columns`` for the type (or a saved view's). The table holds
one page of about a screenful (the rows the terminal has room for, so a taller terminal
gets longer pages); paging, sorting and filtering are ``Query<Type>`` options (``limit``
with the keyset cursor ``after``/``next`` where the API has it, else ``start``; ``sortBy``;
``conditions``), so a view over 100,000 rows stays as quick as one over ten. Events for the
type update rows in place and schedule a quiet re-query of the page (at most every 0.4 s);
a re-query that returns the same rows changes only the cells that differ. A view of a type
that sends no events (management nodes) re-queries on a timer instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from tui.candidates import candidates
from tui.catalogue import Action, Drill, ResourceInfo
from tui.console import CONSOLE_API, attach_console
from tui.data import METRICS_APIS, Page, Status, gather_quietly
from tui.screens.form import Choices, FormScreen
from tui.screens.menus import action_items, confirm_screen, drill_items, outcome
from tui.screens.picker import Picker
from tui.screens.prompt import PromptScreen
from tui.views import View
from tui.widgets.detail import DetailPane
from tui.widgets.filterbar import FilterBar, QuerySuggester, to_conditions
from tui.widgets.footer import KeyFooter
from tui.widgets.header import StatusHeader
from tui.widgets.jobs import JobList
from tui.widgets.table import ResourceTable
from zmn.api.errors import ZmnError

if TYPE_CHECKING:
    from tui.app import ZtuiApp

PAGE_SIZE = None  # rows per page: None for a screenful
MIN_PAGE = 10
CHROME = 4  # lines of the screen that are not table rows: header, info, table header, footer
USAGE_EVERY = 5.0  # seconds between refreshes of the usage columns (one metrics call each)
WIDE = 120  # columns from which UUIDs are shown whole and the detail pane sits on the right


class ResourceScreen(Screen[None]):
    CSS_PATH = "resources.tcss"
    BINDINGS = [
        Binding("enter", "drill", "Open"),
        # Priority: the action runs as the key arrives, so what is typed right after "/" is
        # routed to the filter bar (a non-priority binding runs only after the keys that
        # follow have already been sent to the table).
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("escape", "back", "Back"),
        Binding("d", "toggle_detail", "Detail"),
        Binding("space", "mark", "Mark"),
        Binding("asterisk", "mark_page", "Mark page", show=False, key_display="*"),
        Binding("a", "actions", "Actions"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("c", "columns", "Columns", show=False),
        Binding("v", "save_view", "Save view", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", show=False, key_display="]"),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False, key_display="["),
        Binding("r", "reload", "Reload", show=False),
    ]

    def __init__(
        self,
        info: ResourceInfo,
        *,
        base: list[str] | None = None,
        crumb: str = "",
        page_size: int | None = PAGE_SIZE,
        view: View | None = None,
    ) -> None:
        super().__init__()
        self.info = info
        self.view = view
        self.base = list(base or [])
        self.crumb = crumb or (f"{info.cli} @{view.key}" if view else info.cli)
        self.fixed_page = page_size
        self.page_size = page_size or MIN_PAGE
        self.filter_text = ""
        self.conditions: list[str] = []
        self.sort_by: str | None = info.default_sort
        self.descending = False
        self.columns = list(info.columns)
        self.refresh_every = 0.0
        self.error = ""
        if view is not None:
            self.base = [*view.base, *self.base]
            self.filter_text = view.filter
            try:
                self.conditions = to_conditions(view.filter, "name" in info.fields)
            except ZmnError as exc:
                self.error = f"saved filter {view.filter!r}: {exc.message}"
            self.sort_by, self.descending = view.sort_by or self.sort_by, view.descending
            self.columns = list(view.columns or info.columns)
            self.refresh_every = view.refresh
        self.start = 0
        # Keyset paging: the cursor each visited page was fetched with (None: the first
        # page), and the reply's cursor for the page after the current one.
        self.cursors: list[str | None] = [None]
        self.next_cursor: str | None = None
        self.total = 0
        self.rows: list[dict[str, Any]] = []
        self.marks: set[str] = set()
        self.loaded = False
        self.loads = 0  # pages shown so far (tests and the benchmark wait on it)
        self._pending: Timer | None = None
        self._close_filter = False  # a submitted filter: close the bar with its first page

    @property
    def zapp(self) -> ZtuiApp:
        return self.app  # type: ignore[return-value]

    @property
    def wide(self) -> bool:
        """Whole UUIDs when the table itself (not the terminal) has room for them."""
        width = self.query_one(ResourceTable).size.width if self.is_mounted else 0
        return (width or self.app.size.width) >= WIDE

    def redraw(self) -> None:
        """Re-render the page from memory (after a width change), keeping the cursor."""
        table = self.query_one(ResourceTable)
        table.show(
            self.rows,
            self.marks,
            self.zapp.data.names,
            wide=self.wide,
            cursor_uuid=table.current_key,
        )

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.crumb)
        yield Static(id="info")
        with Horizontal(id="main"):
            table = ResourceTable(self.info, self.columns, id="table")
            table.usage_columns = self.has_usage
            yield table
            yield DetailPane(id="detail")
        yield JobList(id="view-jobs")
        catalogue = self.zapp.data.catalogue
        suggester = QuerySuggester(catalogue, self.info.name) if catalogue else None
        yield FilterBar(
            placeholder="state=Enabled name~=web cluster.zone.name=z1",
            suggester=suggester,
            id="filter",
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_class(self.app.size.width >= WIDE, "-wide")
        app = self.zapp
        app.event_signal.subscribe(self, self.event_arrived)
        app.status_signal.subscribe(self, self.status_changed)
        self.set_interval(1.0, self.show_jobs)
        if self.refresh_every:
            self.set_interval(self.refresh_every, self.schedule_reload)
        if self.has_usage:
            self.set_interval(USAGE_EVERY, self.refresh_usage)
        self.query_one(ResourceTable).focus()
        self.show_info()
        self.load()

    def on_resize(self) -> None:
        self.set_class(self.app.size.width >= WIDE, "-wide")
        self.call_after_refresh(self.resized)

    def resized(self) -> None:
        if self.loaded and not self.start and self.screenful() != self.page_size:
            self.load()  # a first page of the new height
        else:
            self.redraw()

    def on_screen_resume(self) -> None:
        if self.loads:  # shown again (a kept view, or back from a drill-down): fresh rows
            self.load()

    def reset(self) -> None:
        """Back to the plain view (a kept screen opened again from the palette)."""
        self.filter_text, self.conditions, self.error = "", [], ""
        self.marks.clear()
        self.first_page()
        if self.is_mounted:
            self.query_one(FilterBar).display = False
            self.query_one(ResourceTable).focus()

    # ------------------------------------------------------------------ loading

    def all_conditions(self) -> list[str]:
        return [*self.base, *self.conditions]

    def first_page(self) -> None:
        self.start = 0
        self.cursors = [None]
        self.next_cursor = None

    def screenful(self) -> int:
        """Rows per page: a fixed size, else a screenful (at least 10)."""
        if self.fixed_page:
            return self.fixed_page
        # The terminal less the lines around the table (not the table's own height, which
        # an open filter bar or detail pane shortens for a while).
        return max(MIN_PAGE, self.app.size.height - CHROME)

    async def fetch(self) -> Page:
        return await self.zapp.data.query(
            self.info.name,
            self.all_conditions(),
            limit=self.page_size,
            start=self.start,
            sort_by=self.sort_by,
            descending=self.descending,
            after=self.cursors[-1],
        )

    @work(group="load", exclusive=True)
    async def load(self, cursor_uuid: str | None = None, cursor_row: int | None = None) -> None:
        async with self.closing_quietly():
            await self._load(cursor_uuid, cursor_row)

    @asynccontextmanager
    async def closing_quietly(self) -> AsyncIterator[None]:
        """For a worker that shows what it fetched: when the screen was closed during the
        fetch (popped, or the app quits), its widgets are being removed and there is nothing
        to show (a live screen that lacks one is a bug, and raises)."""
        try:
            yield
        except NoMatches:
            going = self._closing or self._pruning or self.app._exit or not self.is_attached
            if self.is_current and not going:
                raise

    async def _load(self, cursor_uuid: str | None, cursor_row: int | None) -> None:
        data = self.zapp.data
        if not self.start:
            self.page_size = self.screenful()  # elsewhere the page boundaries stay put
        try:
            page = await self.fetch()
            while not page.rows and page.total and self.start:
                # The page emptied under us (rows deleted): step back until there are rows.
                if page.keyset and len(self.cursors) > 1:
                    self.cursors.pop()
                    self.start = max(0, self.start - self.page_size)
                elif page.keyset:
                    self.first_page()
                else:
                    self.start = max(0, (page.total - 1) // self.page_size * self.page_size)
                page = await self.fetch()
                if not page.keyset:
                    break
            self.next_cursor = page.next
            await self.resolve_refs(page.rows)
            usage = await self.fetch_usage(page.rows)
        except ZmnError as exc:
            self.error = exc.message
            self.close_filter_bar()
            self.show_info()
            return
        self.error = ""
        self.close_filter_bar()
        self.rows, self.total, self.loaded = page.rows, page.total, True
        self.loads += 1
        table = self.query_one(ResourceTable)
        table.usage = usage
        if cursor_uuid is None and cursor_row is None:
            cursor_uuid = table.current_key
        table.show(
            self.rows,
            self.marks,
            data.names,
            wide=self.wide,
            cursor_uuid=cursor_uuid,
            cursor_row=cursor_row,
        )
        self.show_info()
        self.show_detail()

    @property
    def has_usage(self) -> bool:
        """VMs and hosts on a node whose metrics APIs answer for a page in one call."""
        catalogue = self.zapp.data.catalogue
        api = METRICS_APIS.get(self.info.name)
        return bool(api and catalogue and catalogue.has_param(api, "uuids"))

    async def fetch_usage(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The page's usage in one GetVmMetrics/GetHostMetrics call; none when it fails (the
        columns show ``-``, the rows still load)."""
        if not self.has_usage:
            return {}
        try:
            return await self.zapp.data.usage(
                self.info.name, [str(r["uuid"]) for r in rows if r.get("uuid")]
            )
        except ZmnError:
            return {}

    @work(group="usage", exclusive=True)
    async def refresh_usage(self) -> None:
        """New usage for the rows shown (the page itself is not re-queried)."""
        if not self.is_current or not self.rows or not self.zapp.data.status.live:
            return
        rows = self.rows
        usage = await self.fetch_usage(rows)
        if rows is not self.rows:
            return  # a new page arrived meanwhile, with its own usage
        async with self.closing_quietly():
            table = self.query_one(ResourceTable)
            table.usage = usage
            for row in rows:
                table.update_row(row, self.marks, self.zapp.data.names, wide=self.wide)
            self.show_detail()

    async def resolve_refs(self, rows: list[dict[str, Any]]) -> None:
        wanted: dict[str, set[str]] = {}
        for name in self.info.columns:
            target = self.info.ref(name)
            if target:
                wanted.setdefault(target, set()).update(
                    r[name] for r in rows if isinstance(r.get(name), str)
                )
        for target, uuids in wanted.items():
            if uuids:
                await self.zapp.data.resolve_names(target, uuids)

    def schedule_reload(self, delay: float = 0.4) -> None:
        if not self.is_current:
            return  # a kept view in the background: it reloads when shown again
        if self._pending is None:
            self._pending = self.set_timer(delay, self._reload_now)

    def _reload_now(self) -> None:
        self._pending = None
        self.load()

    def action_reload(self) -> None:
        self.load()

    # ------------------------------------------------------------------ live updates

    def event_arrived(self, frame: dict[str, Any]) -> None:
        data = frame.get("data") or {}
        if not isinstance(data, dict):
            return
        path = str(frame.get("path", ""))
        if data.get("resourceType") != self.info.name and not path.startswith(f"/{self.info.cli}/"):
            return
        inv = data.get("inventory")
        if isinstance(inv, dict) and inv.get("uuid"):
            if path.endswith("/deleted"):
                self.marks.discard(inv["uuid"])
            else:
                self.update_in_place(inv)
        self.schedule_reload()

    def update_in_place(self, inv: dict[str, Any]) -> None:
        for i, row in enumerate(self.rows):
            if row.get("uuid") == inv["uuid"]:
                self.rows[i] = {**row, **inv}
                table = self.query_one(ResourceTable)
                table.update_row(self.rows[i], self.marks, self.zapp.data.names, wide=self.wide)
                if table.current_key == inv["uuid"]:
                    self.show_detail()
                return

    def status_changed(self, status: Status) -> None:
        if status.live and self.is_current:
            self.load()
        self.show_info()

    # ------------------------------------------------------------------ info line, detail, jobs

    def show_info(self) -> None:
        out = Text()
        out.append(f" {self.info.name} ", style="bold reverse")
        if self.loaded:
            last = min(self.total, self.start + len(self.rows))
            first = self.start + 1 if self.rows else 0
            out.append(f" {first:,}-{last:,} of {self.total:,}" if self.total else " no rows")
            pages = max(1, -(-self.total // self.page_size))
            if pages > 1:
                out.append(f" · page {self.start // self.page_size + 1}/{pages}", style="dim")
        else:
            out.append(" loading…", style="dim")
        if self.base:
            out.append(" · " + " ".join(self.readable(c) for c in self.base), style="cyan")
        if self.conditions:
            out.append(" · filter ", style="dim")
            out.append(" ".join(self.conditions), style="bold yellow")
        if self.sort_by:
            out.append(f" · sort {self.sort_by} {'↓' if self.descending else '↑'}", style="dim")
        if self.marks:
            out.append(f" · {len(self.marks)} marked", style="bold magenta")
        if self.error:
            out.append(f"\n {self.error}", style="bold red")
        self.query_one("#info", Static).update(out)

    def readable(self, condition: str) -> str:
        """``zoneUuid=13cf…`` -> ``zoneUuid=z1`` when the name is known."""
        field, sep, value = condition.partition("=")
        for names in self.zapp.data.names.values():
            if names.get(value):
                return f"{field}{sep}{names[value]}"
        return condition

    def current_row(self) -> dict[str, Any] | None:
        key = self.query_one(ResourceTable).current_key
        return next((r for r in self.rows if r.get("uuid") == key), None)

    def show_detail(self) -> None:
        if self.has_class("-detail"):
            row = self.current_row()
            pane = self.query_one(DetailPane)
            pane.show(self.info, row, self.zapp.data.names)
            usage = self.query_one(ResourceTable).usage
            pane.show_usage(usage.get(str(row.get("uuid"))) if row and self.has_usage else None)

    def show_jobs(self) -> None:
        jobs = self.zapp.data.jobs.visible()
        widget = self.query_one("#view-jobs", JobList)
        widget.display = bool(jobs)
        if jobs:
            widget.show(jobs, limit=3)

    @on(DataTable.RowHighlighted, "#table")
    def highlighted(self) -> None:
        self.show_detail()

    def action_toggle_detail(self) -> None:
        self.toggle_class("-detail")
        self.show_detail()
        self.call_after_refresh(self.redraw)

    # ------------------------------------------------------------------ paging and sorting

    @on(ResourceTable.EdgeReached)
    def edge(self, event: ResourceTable.EdgeReached) -> None:
        self.action_page(event.direction, at_edge=True)

    def action_page(self, direction: int, at_edge: bool = False) -> None:
        start = self.start + direction * self.page_size
        if start < 0 or start >= self.total:
            return
        if self.zapp.data.keyset(self.info.name):
            if direction > 0:
                if self.next_cursor is None:
                    return
                self.cursors.append(self.next_cursor)
            elif len(self.cursors) > 1:
                self.cursors.pop()
            else:
                return
        self.start = start
        self.load(cursor_row=(0 if direction > 0 else self.page_size - 1) if at_edge else 0)

    def action_sort(self) -> None:
        items: list[tuple[Text | str, Any]] = []
        for name in self.info.fields:
            mark = (" ↓" if self.descending else " ↑") if name == self.sort_by else ""
            items.append(
                (Text.assemble((name, "bold" if name in self.info.columns else ""), mark), name)
            )
        self.app.push_screen(Picker("sort by", items, subtitle="S reverses"), self.sort_chosen)

    def sort_chosen(self, name: str | None) -> None:
        if name:
            self.descending = self.descending if name == self.sort_by else False
            self.sort_by = name
            self.first_page()
            self.load(cursor_row=0)

    def action_reverse(self) -> None:
        if self.sort_by is None:
            self.sort_by = "uuid"
        self.descending = not self.descending
        self.first_page()
        self.load(cursor_row=0)

    @on(DataTable.HeaderSelected, "#table")
    def header_clicked(self, event: DataTable.HeaderSelected) -> None:
        name = str(event.column_key.value)
        if name not in self.info.fields:
            return
        if name == self.sort_by:
            self.action_reverse()
        else:
            self.sort_chosen(name)

    # ------------------------------------------------------------------ columns, saved views

    def action_columns(self) -> None:
        """Pick a field to show or hide (shown ones are ticked); Escape closes."""
        names = list(dict.fromkeys([*self.columns, *self.info.fields]))
        items: list[tuple[Text | str, Any]] = [
            (Text.assemble(("✓ " if n in self.columns else "  ", "bold green"), n), n)
            for n in names
        ]
        self.app.push_screen(Picker("columns", items, subtitle="enter shows/hides"), self.toggle)

    def toggle(self, name: str | None) -> None:
        if not name:
            return
        if name in self.columns:
            if len(self.columns) > 1:
                self.columns.remove(name)
        else:
            self.columns.append(name)
        self.query_one(ResourceTable).set_columns(self.columns)
        self.redraw()

    def current_view(self, name: str) -> View:
        return View(
            name=name,
            type=self.info.name,
            filter=self.filter_text,
            base=list(self.base),
            columns=None if self.columns == self.info.columns else list(self.columns),
            sort_by=self.sort_by,
            descending=self.descending,
            refresh=self.refresh_every,
        )

    def action_save_view(self) -> None:
        suggested = self.view.name if self.view is not None and not self.view.builtin else ""

        def named(name: str | None) -> None:
            if not name:
                return
            view = self.current_view(name)
            try:
                self.zapp.view_store().save(view)
            except OSError as exc:
                self.notify(markup=False, message=f"cannot save: {exc}", severity="error")
                return
            self.view = view
            self.notify(markup=False, message=f"saved view :{view.key} — {view.describe()}")

        self.app.push_screen(
            PromptScreen(
                "save view as",
                value=suggested,
                hint=f"{self.current_view('x').describe()} · offered in the : palette",
            ),
            named,
        )

    # ------------------------------------------------------------------ filter

    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        self._close_filter = False
        bar.display = True  # inline, so that it is focusable at once (not at the next refresh)
        bar.value = self.filter_text
        bar.cursor_position = len(bar.value)
        # Focus now, not after queued events: "/state=x" typed in one burst must reach the bar.
        self.set_focus(bar)

    @on(Input.Submitted, "#filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        try:
            conditions = to_conditions(event.value, "name" in self.info.fields)
        except ZmnError as exc:
            self.error = exc.message
            self.show_info()
            return
        self.filter_text, self.conditions = event.value.strip(), conditions
        # The bar closes when the filtered page is there: one redraw for both (closing it
        # now would redraw the old rows at the new height while the query runs).
        self._close_filter = True
        self.first_page()
        self.load(cursor_row=0)

    def close_filter_bar(self) -> None:
        if self._close_filter:
            self._close_filter = False
            self.query_one(FilterBar).display = False
            self.query_one(ResourceTable).focus()

    def clear_filter(self) -> None:
        self.filter_text, self.conditions, self.error = "", [], ""
        self.first_page()
        self.load(cursor_row=0)

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        self._close_filter = False
        if bar.display:
            bar.display = False
            self.query_one(ResourceTable).focus()
            if self.conditions or self.error:
                self.clear_filter()
            return
        if self.has_class("-detail"):  # the pane first: the filter and cursor stay
            self.action_toggle_detail()
            return
        if self.conditions or self.error:
            self.clear_filter()
        elif self.marks:
            self.marks.clear()
            self.load()
        elif len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    # ------------------------------------------------------------------ marks

    def action_mark(self) -> None:
        table = self.query_one(ResourceTable)
        key = table.current_key
        if key is None:
            return
        self.marks.symmetric_difference_update({key})
        row = self.current_row()
        if row is not None:
            table.update_row(row, self.marks, self.zapp.data.names, wide=self.wide)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)
        self.show_info()

    def action_mark_page(self) -> None:
        uuids = {str(r["uuid"]) for r in self.rows if r.get("uuid")}
        if uuids <= self.marks:
            self.marks -= uuids
        else:
            self.marks |= uuids
        table = self.query_one(ResourceTable)
        for row in self.rows:
            table.update_row(row, self.marks, self.zapp.data.names, wide=self.wide)
        self.show_info()

    # ------------------------------------------------------------------ drill-down

    def action_drill(self) -> None:
        row = self.current_row()
        if row is None:
            return
        catalogue = self.zapp.data.catalogue
        drills = catalogue.drills(self.info.name) if catalogue else []
        choices = [d for d in drills if d.conditions_for(row)]
        if not choices:
            self.action_toggle_detail()
        elif len(choices) == 1:
            self.open_drill(row, choices[0])
        else:
            self.pick_drill(row, choices)

    @work(group="drill", exclusive=True)
    async def pick_drill(self, row: dict[str, Any], choices: list[Drill]) -> None:
        """Offer the related views with how many rows each holds (one count query each)."""
        data = self.zapp.data
        counts = await gather_quietly(
            *(data.count(d.target, d.conditions_for(row)) for d in choices)
        )
        items = drill_items(choices, counts, row, data.names)
        title = f"{self.info.cli} {row.get('name') or str(row.get('uuid'))[:8]}"

        def chosen(drill: Drill | None) -> None:
            if drill is not None:
                self.open_drill(row, drill)

        self.app.push_screen(Picker(title, items), chosen)

    @on(DataTable.RowSelected, "#table")
    def row_selected(self) -> None:
        if self.is_current:  # a kept view in the background must not open anything
            self.action_drill()

    def open_drill(self, row: dict[str, Any], drill: Drill) -> None:
        catalogue = self.zapp.data.catalogue
        conditions = drill.conditions_for(row)
        if catalogue is None or conditions is None:
            return
        who = row.get("name") or str(row.get("uuid"))[:8]
        crumb = f"{self.crumb} {who} ▸ {drill.label}"
        self.app.push_screen(
            ResourceScreen(catalogue.resources[drill.target], base=conditions, crumb=crumb)
        )

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.zapp.palette_pending or not self.is_current:
            return False  # keys typed right after ":" belong to the palette, not to the view
        if action == "filter" and isinstance(self.focused, Input):
            return False  # a "/" typed into the filter itself
        if action == "actions":
            catalogue = self.zapp.data.catalogue
            if self.zapp.read_only or catalogue is None or not catalogue.actions(self.info.name):
                return False
        return True

    def targets(self) -> list[dict[str, Any]]:
        if self.marks:
            known = {r["uuid"]: r for r in self.rows if r.get("uuid")}
            return [known.get(u, {"uuid": u}) for u in sorted(self.marks)]
        row = self.current_row()
        return [row] if row else []

    def action_actions(self) -> None:
        catalogue = self.zapp.data.catalogue
        if self.zapp.read_only or catalogue is None:
            return
        targets = self.targets()
        if not targets:
            self.notify(markup=False, message="no row selected", severity="warning")
            return
        first = targets[0]
        who = f"{len(targets)} marked" if self.marks else str(first.get("name") or first["uuid"])
        # only what the targets' states allow (with how many of them, when not all)
        offered: list[tuple[Action, list[dict[str, Any]]]] = []
        for action in catalogue.actions(self.info.name):
            able = [t for t in targets if catalogue.permits(self.info.name, action, t)]
            if able:
                offered.append((action, able))
        if not offered:
            states = sorted({str(t.get("state")) for t in targets})
            self.notify(
                markup=False,
                message=f"no action is allowed for {who} in state {', '.join(states)}",
                severity="warning",
            )
            return
        allowed = dict((a, able) for a, able in offered)

        def chosen(action: Action | None) -> None:
            if action is None:
                return
            if action.api == CONSOLE_API:  # no confirmation: attaching changes nothing
                self.console(first, force=action.label.endswith("…"))
                return
            able = allowed[action]
            if action.form:
                self.open_form(action, able, who)
            else:
                self.confirm(action, able, {})

        items = action_items(
            [a for a, _ in offered], [len(able) for _, able in offered], len(targets)
        )
        self.app.push_screen(Picker(f"{self.info.cli}: {who}", items), chosen)

    def console(self, row: dict[str, Any], *, force: bool) -> None:
        data = self.zapp.data
        problem = attach_console(self.app, data.endpoint, data.session, str(row["uuid"]),
                                 force=force)  # fmt: skip
        if problem:
            self.notify(markup=False, message=problem, severity="error")

    def confirm(
        self, action: Action, targets: list[dict[str, Any]], values: dict[str, Any]
    ) -> None:
        uuids = [str(t["uuid"]) for t in targets]

        def answered(ok: bool | None) -> None:
            if ok:  # only the confirmation lets an action through
                self.execute(action, uuids, values)

        screen = confirm_screen(action, targets, self.info.cli, values, self.zapp.data.names)
        self.app.push_screen(screen, answered)

    @work(group="form", exclusive=True)
    async def open_form(self, action: Action, targets: list[dict[str, Any]], who: str) -> None:
        """Fetch the choices for reference parameters, then show the form, then confirm."""
        choices: Choices = {}
        for param in action.params:
            if param.resource is not None:
                try:
                    choices[param.name] = await candidates(
                        self.zapp.data, self.info.name, action, param, targets
                    )
                except ZmnError as exc:
                    self.notify(markup=False, message=exc.message, severity="error")
                    return

        def filled(values: dict[str, Any] | None) -> None:
            if values is not None:
                self.confirm(action, targets, values)

        self.app.push_screen(FormScreen(action, who, choices), filled)

    @work(group="action")
    async def execute(
        self, action: Action, uuids: list[str], values: dict[str, Any] | None = None
    ) -> None:
        results = await self.zapp.data.run_action(
            action.api,
            uuids,
            {**dict(action.args), **(values or {})},
            long=action.long,
            subject=action.subject,
        )
        names = dict(self.zapp.data.names)
        here = {
            str(r["uuid"]): str(r["name"]) for r in self.rows if r.get("uuid") and r.get("name")
        }
        names[self.info.name] = {**names.get(self.info.name, {}), **here}
        message, failed = outcome(action, results, names)
        self.notify(
            markup=False,
            message=message,
            severity="error" if failed else "information",
            timeout=10 if failed else None,
        )
        self.marks.clear()
        self.load()
