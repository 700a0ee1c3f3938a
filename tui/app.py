"""The ztui application: one data source, signals to the screens, navigation.

Screens never talk to the node directly: they use :attr:`ZtuiApp.data` (a
:class:`~tui.data.DataSource`) and subscribe to the app's signals — ``status_signal``
(connection state), ``event_signal`` (every event frame), ``stats_signal`` (node statistics
every ``stats_interval`` seconds) and ``catalogue_signal``.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.signal import Signal
from textual.widgets import Input

from tui.catalogue import Catalogue
from tui.data import ClientFactory, DataSource, Status
from tui.screens.help import HelpScreen
from tui.screens.overview import OverviewScreen
from tui.screens.palette import VIEW, CommandBar
from tui.screens.resources import ResourceScreen
from tui.views import View, ViewStore, views_file
from zmn.api.errors import ZmnError

_frozen = False


def settle_garbage_collector() -> None:
    """Once per process, when the dashboard is up: collect, then move every object alive
    (Textual, the catalogue, the screens: about 100,000) out of the collector's sight.

    Otherwise each full collection walks them all again: 50-130 ms at a random moment, which
    lands in the middle of a keystroke's frame. What the screens create afterwards is still
    collected as usual."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


class ZtuiApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "ztui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("colon", "palette", "Views", key_display=":", priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("0", "overview", "Overview", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        endpoint: str,
        session: str | None = None,
        *,
        read_only: bool = False,
        client_factory: ClientFactory | None = None,
        stats_interval: float = 1.5,
        backoff: tuple[float, float] = (0.5, 10.0),
        views_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.read_only = read_only
        self.stats_interval = stats_interval
        self.data = DataSource(endpoint, session, client_factory=client_factory, backoff=backoff)
        self.status_signal: Signal[Status] = Signal(self, "status")
        self.event_signal: Signal[dict[str, Any]] = Signal(self, "event")
        self.stats_signal: Signal[dict[str, Any]] = Signal(self, "stats")
        self.catalogue_signal: Signal[Catalogue] = Signal(self, "catalogue")
        self._palette: CommandBar | None = None
        self.views_path = views_path or views_file()

    def on_mount(self) -> None:
        self.data.on_status = self.status_signal.publish
        self.data.on_event = self.event_signal.publish
        self.data.on_catalogue = self.catalogue_signal.publish
        self.catalogue_signal.subscribe(self, self.forget_views)
        self.status_signal.subscribe(self, self.first_live)
        self.push_screen(OverviewScreen())
        self.run_data()
        self.set_interval(self.stats_interval, self.poll_stats)

    def first_live(self, status: Status) -> None:
        if status.live and not _frozen:
            self.set_timer(0.2, settle_garbage_collector)  # after the first screen is built

    async def on_unmount(self) -> None:
        await self.data.close()

    @work(group="data", exclusive=True)
    async def run_data(self) -> None:
        await self.data.run()

    @work(group="stats", exclusive=True)
    async def poll_stats(self) -> None:
        try:
            stats = await self.data.poll_stats()
        except ZmnError:
            return
        if stats is not None:
            self.stats_signal.publish(stats)

    # ------------------------------------------------------------------ navigation

    def to_overview(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def view_store(self) -> ViewStore:
        """Saved views of this endpoint and user (known once connected)."""
        return ViewStore(self.views_path, f"{self.data.endpoint} {self.data.user or 'peer'}")

    def open_view(
        self, type_name: str, conditions: list[str] | None = None, view: View | None = None
    ) -> None:
        catalogue = self.data.catalogue
        if catalogue is None or type_name not in catalogue.resources:
            self.notify(markup=False, message=f"no view for {type_name}", severity="warning")
            return
        self.to_overview()
        if conditions or view is not None:
            self.push_screen(
                ResourceScreen(catalogue.resources[type_name], base=conditions, view=view)
            )
            return
        # A plain view is kept once built: opening it again costs a query, not a compose.
        name = f"view-{type_name}"
        if not self.is_screen_installed(name):
            self.install_screen(ResourceScreen(catalogue.resources[type_name]), name)
        else:
            screen = self.get_screen(name)
            if isinstance(screen, ResourceScreen):
                screen.reset()
        self.push_screen(name)

    def forget_views(self, _catalogue: Catalogue | None = None) -> None:
        """A new catalogue (columns, fields) makes the kept views stale: build them afresh."""
        for name in [n for n in self._installed_screens if n.startswith("view-")]:
            if self.get_screen(name) not in self.screen_stack:
                self.uninstall_screen(name)

    def open_saved(self, key: str) -> None:
        view = self.view_store().find(key)
        if view is None:
            self.notify(markup=False, message=f"no saved view {key!r}", severity="warning")
            return
        self.open_view(view.type, view=view)

    @property
    def palette_pending(self) -> bool:
        """``:`` was pressed and the palette is not closed yet (its input may not have the
        focus yet: the keys that follow must not run the screen's bindings)."""
        return self._palette is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "palette" and isinstance(self.screen.focused, Input):
            return False  # ":" typed into an input (the filter, the palette itself)
        return True

    def action_overview(self) -> None:
        self.to_overview()

    def action_palette(self) -> None:
        self._palette = CommandBar(self.data.catalogue, self.view_store())
        self.push_screen(self._palette, self.run_command)

    def on_key(self, event: events.Key) -> None:
        """Keys typed right after ``:`` can arrive before the palette's input has the focus;
        they bubble up to here, and are handed to the palette instead of being lost."""
        if self._palette is not None and self._palette.feed(event.key, event.character):
            event.stop()

    def run_command(self, command: str | None) -> None:
        self._palette = None
        if not command:
            return
        if command == "overview":
            self.to_overview()
        elif command == "help":
            self.action_help()
        elif command == "quit":
            self.exit()
        elif command.startswith(VIEW):
            self.open_saved(command[len(VIEW) :])
        else:
            self.open_view(command)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen.active_bindings, self.data.catalogue))
