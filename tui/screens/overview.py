"""The overview: counts and health per resource type, capacity, node statistics, events, jobs.

Counts come from ``Query<Type> groupBy=state|status`` (one cheap query per type), capacity
from the capacity field pairs the catalogue shows, summed per zone and per cluster, plus IP
addresses used of the L3 ranges (:mod:`tui.ipcapacity`). Both are refreshed when events say
something changed (at most once a second) and every 10 s.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable

from tui.catalogue import CONTAINERS, PREFERRED_ORDER, Catalogue, Metric
from tui.data import Status, gather_quietly
from tui.ipcapacity import METRIC as IP_METRIC
from tui.ipcapacity import IpSums, ip_sums
from tui.widgets.capacity import CapacityPanel, CapacityRow
from tui.widgets.counts import CountsTable, TypeCount
from tui.widgets.events import EventList
from tui.widgets.footer import KeyFooter
from tui.widgets.header import StatusHeader
from tui.widgets.jobs import JobList
from tui.widgets.stats import StatsPanel
from zmn.api.errors import ZmnError

if TYPE_CHECKING:
    from tui.app import ZtuiApp

CAPACITY_ROWS = 100_000
NARROW = 110  # below this many columns the panels stack instead of sitting side by side
# below this many lines every panel gets a one-line title bar instead of a box, capped
# heights (they scroll) and events beside jobs, so that all of them show at 80x24
COMPACT = 34


def overview_types(catalogue: Catalogue) -> list[str]:
    """Types with a health field (state/status) or a capacity pair; preferred ones first."""
    metric_types = {m.resource for m in catalogue.metrics()}
    return [r.name for r in catalogue.views() if r.health_fields or r.name in metric_types]


class OverviewScreen(Screen[None]):
    CSS_PATH = "overview.tcss"
    BINDINGS = [("r", "reload", "Reload")]

    def __init__(self) -> None:
        super().__init__()
        self._pending: Timer | None = None
        self._events_pending: Timer | None = None

    @property
    def zapp(self) -> ZtuiApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield StatusHeader("overview")
        with VerticalScroll(id="body"):
            with Horizontal(id="top"):
                with Vertical(id="resources", classes="panel"):
                    yield CountsTable(id="counts")
                with Vertical(id="node", classes="panel"):
                    yield StatsPanel(id="stats")
            with Vertical(id="capacity", classes="panel"):
                yield CapacityPanel(id="capacity-panel")
            with Horizontal(id="bottom"):
                with Vertical(id="events", classes="panel"):
                    yield EventList(id="event-list")
                with Vertical(id="jobs", classes="panel"):
                    yield JobList(id="job-list")
        yield KeyFooter()

    def on_mount(self) -> None:
        for panel, title in (
            ("#resources", "resources"),
            ("#node", "management node"),
            ("#capacity", "capacity"),
            ("#events", "events"),
            ("#jobs", "jobs"),
        ):
            self.query_one(panel).border_title = title
        app = self.zapp
        self.on_resize()
        app.status_signal.subscribe(self, self.status_changed)
        app.event_signal.subscribe(self, self.event_arrived)
        app.stats_signal.subscribe(self, lambda _s: self.query_one(StatsPanel).show(app.data.stats))
        app.catalogue_signal.subscribe(self, lambda _c: self.action_reload())
        self.set_interval(10.0, self.action_reload)
        self.set_interval(1.0, self.show_jobs)
        self.query_one(StatsPanel).show(app.data.stats)
        self.show_events()
        self.action_reload()

    def on_resize(self) -> None:
        self.set_class(self.app.size.width < NARROW, "-narrow")
        compact = self.app.size.height < COMPACT
        self.set_class(compact, "-compact")
        stats = self.query_one(StatsPanel)
        if stats.compact != compact:
            stats.compact = compact
            stats.show(self.zapp.data.stats)

    def status_changed(self, status: Status) -> None:
        if status.live:
            self.action_reload()

    def event_arrived(self, frame: dict[str, Any]) -> None:
        if self._events_pending is None:
            self._events_pending = self.set_timer(0.25, self.show_events)
        path = str(frame.get("path", ""))
        if not path.startswith("/job/") and self._pending is None:
            self._pending = self.set_timer(1.0, self.action_reload)

    def show_events(self) -> None:
        self._events_pending = None
        self.query_one(EventList).show(self.zapp.data.events)
        self.show_jobs()

    def show_jobs(self) -> None:
        self.query_one(JobList).show(self.zapp.data.jobs.visible())

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self._pending = None
        if self.zapp.data.catalogue is None or not self.zapp.data.status.live:
            return
        if not self.is_current:
            return  # under a view: its queries would compete with the view's; resume reloads
        self.refresh_counts()
        self.refresh_capacity()

    @on(DataTable.RowSelected, "#counts")
    def open_type(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.zapp.open_view(event.row_key.value)

    # ------------------------------------------------------------------ counts

    @work(group="counts", exclusive=True)
    async def refresh_counts(self) -> None:
        data = self.zapp.data
        catalogue = data.catalogue
        assert catalogue is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        names = overview_types(catalogue)

        async def one(name: str) -> TypeCount:
            info = catalogue.resources[name]
            count = TypeCount(name, info.cli, None)
            try:
                if info.health_fields:
                    for f in info.health_fields:
                        count.health[f] = await data.groups(name, f)
                    count.total = sum(next(iter(count.health.values())).values())
                else:
                    count.total = await data.count(name)
            except ZmnError as exc:
                count.error = exc.message
            return count

        results = await gather_quietly(*(one(n) for n in names))
        # Empty types other than the core ones would only push the rest off an 80x24 screen.
        shown = [
            r
            for r in results
            if isinstance(r, TypeCount) and (r.total != 0 or r.name in PREFERRED_ORDER)
        ]
        for widget in self.query(CountsTable):  # none while the screen is being (re)built
            widget.show(shown)

    # ------------------------------------------------------------------ capacity

    @work(group="capacity", exclusive=True)
    async def refresh_capacity(self) -> None:
        data = self.zapp.data
        catalogue = data.catalogue
        assert catalogue is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        metrics = catalogue.metrics()
        by_type: dict[str, list[Metric]] = defaultdict(list)
        for m in metrics:
            by_type[m.resource].append(m)
        rows_by_type: dict[str, list[dict[str, Any]]] = {}
        for type_name, ms in by_type.items():
            fields = sorted(
                {f for m in ms for f in (m.total, m.available, *(g for g, _c in m.groups))}
            )
            try:
                page = await data.query(type_name, limit=CAPACITY_ROWS, fields=fields)
            except ZmnError:
                continue
            rows_by_type[type_name] = page.rows
        ips = await ip_sums(data)
        if ips is not None and ips.sums:
            metrics = [*metrics, IP_METRIC]
        table = await self.capacity_rows(metrics, rows_by_type, ips)
        for panel in self.query(CapacityPanel):
            panel.show(metrics, table)

    async def capacity_rows(
        self,
        metrics: list[Metric],
        rows_by_type: dict[str, list[dict[str, Any]]],
        ips: IpSums | None = None,
    ) -> list[CapacityRow]:
        """Sum (used, total) per metric for every zone and cluster; clusters under their zone."""
        zone_type, cluster_type = CONTAINERS
        sums: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0])
        )
        cluster_zone: dict[str, str] = {}
        for m in metrics:
            for row in rows_by_type.get(m.resource, []):
                total = float(row.get(m.total) or 0)
                used = total - float(row.get(m.available) or 0)
                zone = row.get(m.group_field(zone_type) or "") or ""
                cluster = row.get(m.group_field(cluster_type) or "") or ""
                if cluster and zone:
                    cluster_zone[cluster] = zone
                for key in ((zone_type, zone), (cluster_type, cluster)):
                    if key[1]:
                        pair = sums[key][m.label]
                        pair[0] += used
                        pair[1] += total
        if ips is not None:
            for key, (used, total) in ips.sums.items():
                sums[key][IP_METRIC.label] = [used, total]
            for cluster, zone in ips.cluster_zone.items():
                cluster_zone.setdefault(cluster, zone)
        zones = {z for (kind, z) in sums if kind == zone_type}
        clusters = {c for (kind, c) in sums if kind == cluster_type}
        data = self.zapp.data
        zone_names = await data.resolve_names(zone_type, zones) if zones else {}
        cluster_names = await data.resolve_names(cluster_type, clusters) if clusters else {}
        out: list[CapacityRow] = []
        for zone in sorted(zones, key=lambda z: zone_names.get(z) or z):
            values = {k: (v[0], v[1]) for k, v in sums[(zone_type, zone)].items()}
            out.append(CapacityRow(zone_names.get(zone) or zone[:8], 0, values))
            for cluster in sorted(
                (c for c in clusters if cluster_zone.get(c) == zone),
                key=lambda c: cluster_names.get(c) or c,
            ):
                values = {k: (v[0], v[1]) for k, v in sums[(cluster_type, cluster)].items()}
                out.append(CapacityRow(cluster_names.get(cluster) or cluster[:8], 1, values))
        return out
