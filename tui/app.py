"""The ztui application: one data source, signals to the screens, navigation.

Screens never talk to the node directly: they use :attr:`ZtuiApp.data` (a
:class:`~tui.data.DataSource`) and subscribe to the app's signals — ``status_signal``
(connection state), ``event_signal`` (every event frame), ``stats_signal`` (node statistics
every ``stats_interval`` seconds) and ``catalogue_signal``.
"""

from __future__ import annotations

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
from tui.screens.palette import CommandBar
from tui.screens.resources import ResourceScreen
from zmn.api.errors import ZmnError


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

    def on_mount(self) -> None:
        self.data.on_status = self.status_signal.publish
        self.data.on_event = self.event_signal.publish
        self.data.on_catalogue = self.catalogue_signal.publish
        self.push_screen(OverviewScreen())
        self.run_data()
        self.set_interval(self.stats_interval, self.poll_stats)

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

    def open_view(self, type_name: str, conditions: list[str] | None = None) -> None:
        catalogue = self.data.catalogue
        if catalogue is None or type_name not in catalogue.resources:
            self.notify(markup=False, message=f"no view for {type_name}", severity="warning")
            return
        self.to_overview()
        self.push_screen(ResourceScreen(catalogue.resources[type_name], base=conditions))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "palette" and isinstance(self.screen.focused, Input):
            return False  # ":" typed into an input (the filter, the palette itself)
        return True

    def action_overview(self) -> None:
        self.to_overview()

    def action_palette(self) -> None:
        self._palette = CommandBar(self.data.catalogue)
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
        else:
            self.open_view(command)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen.active_bindings, self.data.catalogue))
