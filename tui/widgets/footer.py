"""The key footer, rebuilt only when the keys it shows change.

Textual's :class:`~textual.widgets.Footer` rebuilds all its key widgets whenever the
bindings may have changed, which includes every focus change (the filter bar closing hands
the focus back to the table). On a busy view that rebuild costs more than redrawing the rows
that changed, for the same keys; this footer skips it when the shown keys are the same.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


def shown_keys(screen: Screen[Any]) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
        for (_node, binding, enabled, tooltip) in screen.active_bindings.values()
        if binding.show
    )


class KeyFooter(Footer):
    _shown: tuple[tuple[Any, ...], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if screen is self.screen and screen.app.app_focus:
            shown = shown_keys(screen)
            if self._bindings_ready and shown == self._shown:
                return
            self._shown = shown
        super().bindings_changed(screen)
